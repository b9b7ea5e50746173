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

// wait returns the channel closed when the current deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

func (d *deadline) isZero() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at.IsZero()
}

// pump reads a stream in its own goroutine, so that a Read can give up at
// its deadline without losing what arrives later: the next Read gets it.
type pump struct {
	chunks chan []byte
	err    error // set before chunks is closed

	mu   sync.Mutex // one Read at a time takes from rest and chunks
	rest []byte
}

// newPump reads r until it fails or closed is closed.
func newPump(r io.Reader, closed <-chan struct{}) *pump {
	p := &pump{chunks: make(chan []byte)}
	go func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case p.chunks <- buf[:n]:
				case <-closed:
					return
				}
			}
			if err != nil {
				p.err = err
				close(p.chunks)
				return
			}
		}
	}()
	return p
}

// read copies what has arrived into b, waiting until something has, the
// deadline passes (expired) or the Conn is closed.
func (p *pump) read(b []byte, expired, closed <-chan struct{}) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rest) == 0 {
		select {
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		default:
		}
		select {
		case chunk, ok := <-p.chunks:
			if !ok {
				return 0, p.err
			}
			p.rest = chunk
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-closed:
			return 0, net.ErrClosed
		}
	}
	n := copy(b, p.rest)
	p.rest = p.rest[n:]
	return n, nil
}
