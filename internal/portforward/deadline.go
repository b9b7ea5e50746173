package portforward

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// deadline is a net.Conn deadline: a channel closed when it passes, which
// blocked calls select on. Setting it again re-arms it.
type deadline struct {
	mu      sync.Mutex
	at      time.Time
	timer   *time.Timer
	gen     uint64 // ignores timers of earlier settings that fire late
	expired chan struct{}
}

func newDeadline() *deadline { return &deadline{expired: make(chan struct{})} }

// set moves the deadline to t; zero means none, a time past expires it now.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	d.at = t
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.expired:
		d.expired = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.expired)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(d.expired)
		}
	})
}

// state returns, under one lock, the channel closed when the current
// deadline passes and whether no deadline is set.
func (d *deadline) state() (expired <-chan struct{}, none bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired, d.at.IsZero()
}

// pump reads a stream so that a Read can give up at its deadline without
// losing what arrives later. Only a Read made under a deadline reads in a
// goroutine (into one buffer, reused); without a deadline, and with no
// such read left in flight, Read reads the stream itself: the data path
// of a tunnel pays nothing for deadlines it does not use.
type pump struct {
	r io.Reader

	mu       sync.Mutex // one Read at a time
	buf      []byte     // the background read's buffer, allocated once
	rest     []byte     // read but not yet returned
	inflight chan readResult
}

type readResult struct {
	n   int
	err error
}

func newPump(r io.Reader) *pump { return &pump{r: r} }

// read copies what has arrived into b. With no deadline and nothing in
// flight it reads r directly; otherwise it waits for the background read,
// the deadline (expired) or the Conn's close.
func (p *pump) read(b []byte, d *deadline, closed <-chan struct{}) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, nil
	}
	expired, none := d.state()
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if p.inflight == nil && none {
		return p.r.Read(b)
	}
	if p.inflight == nil {
		if p.buf == nil {
			p.buf = make([]byte, 32<<10)
		}
		done := make(chan readResult, 1)
		p.inflight = done
		go func() {
			n, err := p.r.Read(p.buf)
			done <- readResult{n, err}
		}()
	}
	select {
	case res := <-p.inflight:
		p.inflight = nil
		p.rest = p.buf[:res.n]
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, res.err
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	case <-closed:
		return 0, net.ErrClosed
	}
}
