package readyprobe

import (
	"errors"
	"net"
	"sync"
)

// ErrAnswered ends a connection that was a probe: the agent answered it,
// and nothing of it goes anywhere else.
var ErrAnswered = errors.New("readiness probe answered")

// Answer answers c when first, the bytes already read from it, is a probe
// with an expected nonce: it writes the answer naming pod, closes c and
// reports true. Otherwise it does nothing.
func (s *Nonces) Answer(c net.Conn, first []byte, pod string) bool {
	n, ok := s.Match(first)
	if !ok {
		return false
	}
	c.Write(Answer(n, pod))
	c.Close()
	return true
}

// Watch returns c, or, while some nonce is expected, c with its first Read
// checked: a probe is answered there and that Read returns ErrAnswered
// (the connection's copier then closes both ends), so the marker never
// reaches the upstream. Nothing waits for the caller's first bytes: the
// check happens on the read the copy does anyway, so a protocol where the
// server speaks first is not slowed, and its greeting may reach the probe
// before the answer (ReadAnswer skips it).
func (s *Nonces) Watch(c net.Conn, pod string) net.Conn {
	if !s.Active() {
		return c
	}
	return &watchedConn{Conn: c, nonces: s, pod: pod}
}

type watchedConn struct {
	net.Conn
	nonces *Nonces
	pod    string
	once   sync.Once
}

func (w *watchedConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	answered := false
	w.once.Do(func() {
		answered = n > 0 && w.nonces.Answer(w.Conn, b[:n], w.pod)
	})
	if answered {
		return 0, ErrAnswered
	}
	return n, err
}

// CloseWrite half-closes when the connection can.
func (w *watchedConn) CloseWrite() error {
	if cw, ok := w.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return w.Conn.Close()
}
