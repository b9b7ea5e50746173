package httproute

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// teeBody keeps a copy of the request body as it is read, up to a cap.
type teeBody struct {
	mu     sync.Mutex // the transport reads the body in its own goroutine
	rc     io.ReadCloser
	buf    bytes.Buffer
	cap    int
	over   bool // the body was longer than cap
	ended  bool // read to its end
	closed bool
}

func newTeeBody(rc io.ReadCloser, cap int) *teeBody { return &teeBody{rc: rc, cap: cap} }

func (t *teeBody) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.rc.Read(p)
	if n > 0 && !t.over {
		if t.buf.Len()+n > t.cap {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		t.ended = true
	}
	return n, err
}

func (t *teeBody) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.rc.Close()
}

// copyable reports whether the whole body was seen and kept. A request
// with no body (http.NoBody) counts as read.
func (t *teeBody) copyable(req *http.Request) ([]byte, bool) {
	t.mu.Lock()
	over, ended, closed := t.over, t.ended, t.closed
	t.mu.Unlock()
	if !over && !ended && !closed && req.ContentLength != 0 {
		// The app answered before reading the body: read what is left,
		// within the cap, so the copy is whole.
		io.Copy(io.Discard, t)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over || !t.ended && req.ContentLength != 0 {
		return nil, false
	}
	return bytes.Clone(t.buf.Bytes()), true
}

// mirror sends one mirror route's copies from a bounded queue, so a slow,
// stuck or dead laptop never holds up the callers.
type mirror struct {
	router *Router
	route  Route
	queue  chan mirrorCopy
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	h2     *http.Transport // HTTP/2 cleartext copies (HTTP/1 ones: each worker's own connection)
}

func newMirror(r *Router, rt Route) *mirror {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mirror{router: r, route: rt, queue: make(chan mirrorCopy, r.cfg.MirrorQueue), ctx: ctx, cancel: cancel}
	m.h2 = r.transport(&m.route, "mirror", true)
	for range r.cfg.MirrorWorkers {
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

// work sends copies until the mirror stops: HTTP/2 ones through the
// shared transport, HTTP/1 ones over this worker's own kept-alive
// connection, written and answered in this goroutine.
func (m *mirror) work() {
	defer m.wg.Done()
	var h1 *h1Conn
	defer func() {
		if h1 != nil {
			h1.conn.Close()
		}
	}()
	for {
		select {
		case <-m.ctx.Done():
			return
		case c := <-m.queue:
			if time.Since(c.queued) > m.router.cfg.MirrorTimeout {
				m.router.count(func(s *Stats) { s.MirrorDropped[m.route.ID]++ })
				continue
			}
			if c.req.ProtoMajor == 2 {
				m.send(c.req)
			} else {
				h1 = m.sendH1(h1, c.req)
			}
		}
	}
}

// sendH1 sends one HTTP/1 copy over u (dialing when nil) and reads its
// answer to the end, dropped; it returns the connection to reuse, nil
// when it had to be closed.
func (m *mirror) sendH1(u *h1Conn, req *http.Request) *h1Conn {
	id := m.route.ID
	fail := func(err error) *h1Conn {
		m.router.cfg.Logger.Debug("mirrored copy not delivered", "to", id, "err", err)
		m.router.count(func(s *Stats) { s.MirrorDropped[id]++ })
		if u != nil {
			u.conn.Close()
		}
		return nil
	}
	deadline := time.Now().Add(m.router.cfg.MirrorTimeout)
	if u == nil {
		ctx, cancel := context.WithDeadline(m.ctx, deadline)
		c, err := m.route.Dial(ctx)
		cancel()
		if err != nil {
			return fail(err)
		}
		c = m.router.cfg.Upstream(c, "mirror", &m.route)
		u = &h1Conn{conn: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}
	}
	u.conn.SetDeadline(deadline)
	err := req.Write(u.bw)
	if err == nil {
		err = u.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(u.br, req)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		return fail(err)
	}
	u.conn.SetDeadline(time.Time{})
	m.router.count(func(s *Stats) { s.Mirrored[id]++ })
	if resp.Close {
		u.conn.Close()
		return nil
	}
	return u
}

// mirrorCopy is a request waiting for its laptop since queued.
type mirrorCopy struct {
	req    *http.Request
	queued time.Time
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
	id := m.route.ID
	if err != nil {
		m.router.cfg.Logger.Debug("mirrored copy not delivered", "to", id, "err", err)
		m.router.count(func(s *Stats) { s.MirrorDropped[id]++ })
		return
	}
	m.router.count(func(s *Stats) { s.Mirrored[id]++ })
}

// mirror queues a copy of req, whose body tee kept, for route rt; a full
// queue or a body it cannot copy drops it, counted.
func (r *Router) mirror(rt Route, req *http.Request, tee *teeBody) {
	r.mu.Lock()
	m := r.mirrors[rt.ID]
	r.mu.Unlock()
	drop := func() { r.count(func(s *Stats) { s.MirrorDropped[rt.ID]++ }) }
	if m == nil || req.Header.Get("Upgrade") != "" {
		drop()
		return
	}
	body, ok := tee.copyable(req)
	if !ok {
		drop()
		return
	}
	out := &http.Request{
		Method:     req.Method,
		URL:        cloneURL(req),
		Proto:      req.Proto,
		ProtoMajor: req.ProtoMajor,
		ProtoMinor: req.ProtoMinor,
		Header:     req.Header.Clone(),
		Host:       req.Host,
		Trailer:    req.Trailer.Clone(),
	}
	out.ContentLength = int64(len(body))
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	removeHopByHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // Request.Write adds Go's own otherwise
	}
	select {
	case m.queue <- mirrorCopy{req: out, queued: time.Now()}:
	default:
		drop()
	}
}

func cloneURL(req *http.Request) *url.URL {
	u := *req.URL
	u.Scheme, u.Host = "http", req.Host
	return &u
}

// removeHopByHop drops the headers that belong to the caller's connection
// ("TE: trailers" stays: gRPC servers require it).
func removeHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	trailers := httpguts.HeaderValuesContainsToken(h.Values("Te"), "trailers")
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		h.Del(name)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
}
