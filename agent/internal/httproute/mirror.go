package httproute

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// mirror sends one mirror route's copies from a bounded queue, so a slow,
// stuck or dead laptop never holds up the callers.
//
// HTTP/1 copies are pipelined: each sender drains what the queue holds
// (up to mirrorBatch), writes it to its kept-alive connection in one
// write and hands the copies to that connection's reader, which reads the
// answers in order and drops them. At thousands of copies a second that
// is one write and one yamux frame per batch instead of per copy, and two
// goroutines per connection instead of one per copy in flight; so the
// copies take little of the CPU the app's callers need. A laptop that
// answers slowly fills its connections' in-flight bounds, then the
// queue, then copies are dropped, counted: never a wait for a caller.
type mirror struct {
	router *Router
	route  Route
	queue  chan mirrorCopy
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	h2     *http.Transport // HTTP/2 cleartext copies, each its own stream
	h2sem  chan struct{}   // bounds the HTTP/2 copies in flight
}

// mirrorBatch bounds the copies one write carries.
const mirrorBatch = 64

func newMirror(r *Router, rt Route) *mirror {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mirror{router: r, route: rt, queue: make(chan mirrorCopy, r.cfg.MirrorQueue), ctx: ctx, cancel: cancel,
		h2sem: make(chan struct{}, r.cfg.MirrorInFlight)}
	m.h2 = r.transport(&m.route, "mirror", true)
	for range r.cfg.MirrorConns {
		m.wg.Add(1)
		go m.work()
	}
	return m
}

func (m *mirror) stop() {
	m.cancel()
	go func() {
		m.wg.Wait()
		m.h2.CloseIdleConnections()
	}()
}

func (m *mirror) dropped() { m.router.count(func(s *Stats) { s.MirrorDropped[m.route.ID]++ }) }

// lost counts a copy that could not be delivered, saying why.
func (m *mirror) lost(err error) {
	m.router.cfg.Logger.Debug("mirrored copy not delivered", "to", m.route.ID, "err", err)
	m.dropped()
}

// work sends copies until the mirror stops: HTTP/1 ones pipelined over
// this sender's connection, HTTP/2 ones through the shared transport.
func (m *mirror) work() {
	defer m.wg.Done()
	var p *h1Pipe
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	batch := make([]mirrorCopy, 0, mirrorBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		batch = batch[:0]
		select {
		case <-m.ctx.Done():
			return
		case c := <-m.queue:
			batch = append(batch, c)
		}
		// Linger for more copies only while the connection has room to
		// send them: copies for a laptop that does not keep up wait in the
		// queue, bounded, not in this sender's hands.
		room := mirrorBatch
		if p != nil {
			room = min(room, 1+cap(p.inflight)-len(p.inflight))
		}
		if l := m.router.cfg.MirrorLinger; l > 0 && room > 1 {
			linger.Reset(l)
		gather:
			for len(batch) < room {
				select {
				case c := <-m.queue:
					batch = append(batch, c)
				case <-linger.C:
					break gather
				case <-m.ctx.Done():
					linger.Stop()
					return
				}
			}
			linger.Stop()
		}
	drain:
		for len(batch) < mirrorBatch {
			select {
			case c := <-m.queue:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		h1 := batch[:0]
		for _, c := range batch {
			switch {
			case time.Since(c.queued) > m.router.cfg.MirrorTimeout:
				m.dropped()
			case c.req.ProtoMajor == 2:
				select {
				case m.h2sem <- struct{}{}:
				case <-m.ctx.Done():
					return
				}
				go func() {
					defer func() { <-m.h2sem }()
					m.send(c.req)
				}()
			default:
				h1 = append(h1, c)
			}
		}
		if len(h1) > 0 {
			p = m.sendH1(p, h1)
		}
	}
}

// h1Pipe is one kept-alive connection to the laptop carrying pipelined
// HTTP/1 copies; its reader goroutine reads their answers in order.
type h1Pipe struct {
	conn     net.Conn
	bw       *bufio.Writer
	inflight chan mirrorCopy // written, answer not read yet
	dead     chan struct{}   // closed when the connection failed or must close
	once     sync.Once
	// written counts the copies the sender is done writing (into bw, or
	// failed), in inflight's order: the reader may record copy n in place
	// once written reaches n. A laptop can answer a copy before it was
	// written, or the connection fail under it.
	written atomic.Uint64
}

// kill ends the connection: copies in flight are dropped.
func (p *h1Pipe) kill() {
	p.once.Do(func() {
		close(p.dead)
		p.conn.Close()
	})
}

// close stops writing; the reader drops what is still in flight.
func (p *h1Pipe) close() {
	p.kill()
	close(p.inflight)
}

// sendH1 writes the copies of batch over p (dialing when nil or dead) in
// one write; it returns the connection to reuse, nil when it failed.
func (m *mirror) sendH1(p *h1Pipe, batch []mirrorCopy) *h1Pipe {
	for len(batch) > 0 {
		if p != nil {
			select {
			case <-p.dead:
				p.close()
				p = nil
			default:
			}
		}
		if p == nil {
			if p = m.dial(); p == nil {
				for range batch {
					m.dropped()
				}
				return nil
			}
		}
		n := m.write(p, batch)
		batch = batch[n:]
	}
	return p
}

// write writes the copies of batch to p until its in-flight bound is
// reached or it dies; it returns how many it took (sent, or dropped
// because the connection died under them).
func (m *mirror) write(p *h1Pipe, batch []mirrorCopy) int {
	p.conn.SetWriteDeadline(time.Now().Add(m.router.cfg.MirrorTimeout))
	taken := 0
	for _, c := range batch {
		c.sent = time.Now()
		select {
		case p.inflight <- c:
		default:
			if taken > 0 { // let what is buffered go out while the reader catches up
				if p.bw.Flush() != nil {
					p.kill()
					return taken
				}
			}
			select {
			case p.inflight <- c:
			case <-p.dead:
				return taken
			case <-m.ctx.Done():
				m.dropped()
				return taken + 1
			}
		}
		taken++
		err := c.req.Write(p.bw)
		p.written.Add(1)
		if err != nil {
			m.router.cfg.Logger.Debug("mirrored copy not delivered", "to", m.route.ID, "err", err)
			p.kill() // the reader drops it and what follows
			return taken
		}
	}
	if err := p.bw.Flush(); err != nil {
		p.kill()
	}
	return taken
}

// dial opens a connection to the laptop and starts its reader; nil when
// it cannot.
func (m *mirror) dial() *h1Pipe {
	ctx, cancel := context.WithTimeout(m.ctx, m.router.cfg.MirrorTimeout)
	c, err := m.route.Dial(ctx)
	cancel()
	if err != nil {
		m.router.cfg.Logger.Debug("mirrored copies not delivered", "to", m.route.ID, "err", err)
		return nil
	}
	var rec MirrorRecorder
	if m.router.cfg.MirrorRecorder != nil {
		rec = m.router.cfg.MirrorRecorder(&m.route)
	} else {
		c = m.router.cfg.Upstream(c, "mirror", &m.route)
	}
	p := &h1Pipe{conn: c, bw: bufio.NewWriterSize(c, 32<<10),
		inflight: make(chan mirrorCopy, m.router.cfg.MirrorInFlight-1), dead: make(chan struct{})}
	go m.readAnswers(p, bufio.NewReaderSize(c, 16<<10), rec)
	return p
}

// MirrorRecorder records the copies one of a mirror's HTTP/1 connections
// carries and the laptop's answers, as the mirror wrote and read them
// (httprec.Made). One goroutine uses it at a time.
type MirrorRecorder interface {
	// AnswerBody is where the body of the next answer, resp, is copied.
	AnswerBody(resp *http.Response) io.Writer
	// Record records req, handed to the connection at sent with body, and
	// its answer resp, whose head was read at head and body by end; resp
	// is nil when none came, err says why the exchange is incomplete.
	Record(req *http.Request, body []byte, sent, head, end time.Time, resp *http.Response, err error)
}

// readAnswers reads the answers to p's copies in order, dropping them
// (recorded by rec when not nil), until p is closed; after a failure, the
// copies still in flight are dropped, counted.
func (m *mirror) readAnswers(p *h1Pipe, br *bufio.Reader, rec MirrorRecorder) {
	var failed error
	var buf []byte // the answers' bodies pass through it on their way to rec
	if rec != nil {
		buf = make([]byte, 8<<10)
	}
	var n uint64 // copies taken from inflight
	record := func(c mirrorCopy, head, end time.Time, resp *http.Response, err error) {
		req := c.req
		if p.written.Load() < n {
			// The sender may still be writing it: the recorder changes the
			// header it takes, so it gets its own.
			r := *req
			r.Header = req.Header.Clone()
			req = &r
		}
		rec.Record(req, c.body, c.sent, head, end, resp, err)
	}
	for c := range p.inflight {
		n++
		if failed != nil {
			m.dropped()
			if rec != nil {
				now := time.Now()
				record(c, now, now, nil, failed)
			}
			continue
		}
		p.conn.SetReadDeadline(time.Now().Add(m.router.cfg.MirrorTimeout))
		resp, err := http.ReadResponse(br, c.req)
		head := time.Now()
		if err == nil {
			if rec != nil {
				_, err = io.CopyBuffer(rec.AnswerBody(resp), resp.Body, buf)
			} else {
				_, err = io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
		}
		if rec != nil {
			record(c, head, time.Now(), resp, err)
		}
		if err != nil {
			m.lost(err)
			failed = err
			p.kill()
			continue
		}
		m.router.count(func(s *Stats) { s.Mirrored[m.route.ID]++ })
		if resp.Close {
			failed = errors.New("the laptop closed the connection")
			p.kill()
		}
	}
}

// mirrorCopy is a request waiting for its laptop since queued, with its
// whole body; sent is when it was handed to a connection.
type mirrorCopy struct {
	req          *http.Request
	body         []byte
	queued, sent time.Time
}

// send sends one HTTP/2 copy and reads its answer, dropped.
func (m *mirror) send(req *http.Request) {
	ctx, cancel := context.WithTimeout(m.ctx, m.router.cfg.MirrorTimeout)
	defer cancel()
	resp, err := m.h2.RoundTrip(req.WithContext(ctx))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		m.lost(err)
		return
	}
	m.router.count(func(s *Stats) { s.Mirrored[m.route.ID]++ })
}
