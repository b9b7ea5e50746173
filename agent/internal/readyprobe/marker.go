// Package readyprobe tells when a Service sends its connections to the
// agents: an agent dials the Service's ClusterIP from inside the cluster
// and sends a marker (a magic and a nonce the daemon registered with the
// agents over their tunnels); an agent that accepts such a connection
// answers with its pod's name instead of forwarding it. The wire format is
// in spec.md beside this file.
package readyprobe

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Magic opens a probe connection: 16 bytes no HTTP/1, HTTP/2 (gRPC), TLS
// or other client-first protocol begins with (a zero byte, then 0xff).
const Magic = "\x00\xffTETHER-READY\x00\xfe"

// AnswerMagic opens an agent's answer.
const AnswerMagic = "\x00\xfeTETHER-HERE!\x00\xff"

// NonceSize is the nonce's length; MarkerSize the whole marker's.
const (
	NonceSize  = 16
	MarkerSize = len(Magic) + NonceSize
)

// Nonce names one readiness check; only a nonce the agent was told to
// expect makes it answer.
type Nonce [NonceSize]byte

// Marker is what a probe connection sends first, in one write.
func Marker(n Nonce) []byte {
	return append([]byte(Magic), n[:]...)
}

// Answer is what an agent sends back to a probe with nonce n, then closes:
// the answer magic, the nonce, the pod name's length (one byte) and the
// pod name (cut to 255 bytes).
func Answer(n Nonce, pod string) []byte {
	if len(pod) > 255 {
		pod = pod[:255]
	}
	b := append([]byte(AnswerMagic), n[:]...)
	b = append(b, byte(len(pod)))
	return append(b, pod...)
}

// maxAnswerRead bounds what ReadAnswer reads looking for the answer: a
// server-first app may have greeted the probe before its agent answered.
const maxAnswerRead = 4 << 10

// ErrNoAnswer: the connection ended, or held more than maxAnswerRead bytes,
// without an agent's answer to the nonce.
var ErrNoAnswer = errors.New("no agent answered the probe")

// ReadAnswer reads r until an answer to n, and returns its pod name. Bytes
// before it (a greeting) are skipped.
func ReadAnswer(r io.Reader, n Nonce) (string, error) {
	head := append([]byte(AnswerMagic), n[:]...)
	buf := make([]byte, 0, 512)
	for len(buf) < maxAnswerRead {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if i := bytes.Index(buf, head); i >= 0 {
			rest := buf[i+len(head):]
			if len(rest) > 0 && len(rest) >= 1+int(rest[0]) {
				return string(rest[1 : 1+int(rest[0])]), nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", ErrNoAnswer
			}
			return "", err
		}
	}
	return "", ErrNoAnswer
}

// Nonces are the nonces an agent answers to, each until its expiry. Its
// methods are safe for concurrent use; Match is a single atomic load while
// none is registered, the agent's steady state.
type Nonces struct {
	now   func() time.Time
	count atomic.Int32
	mu    sync.Mutex
	m     map[Nonce]time.Time
}

// NewNonces returns an empty set; now is the clock (nil: time.Now).
func NewNonces(now func() time.Time) *Nonces {
	if now == nil {
		now = time.Now
	}
	return &Nonces{now: now, m: map[Nonce]time.Time{}}
}

// Expect makes the agent answer probes with n for ttl (again, when n is
// known: its expiry moves).
func (s *Nonces) Expect(n Nonce, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropExpiredLocked()
	s.m[n] = s.now().Add(ttl)
	s.count.Store(int32(len(s.m)))
}

// Forget stops answering probes with n.
func (s *Nonces) Forget(n Nonce) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, n)
	s.count.Store(int32(len(s.m)))
}

// Active reports whether some nonce may be expected: only then does a
// connection's first read need a look.
func (s *Nonces) Active() bool { return s.count.Load() > 0 }

// Match reports whether b, a connection's first bytes, is a probe with a
// nonce the agent expects now, and which.
func (s *Nonces) Match(b []byte) (Nonce, bool) {
	var n Nonce
	if !s.Active() || len(b) < MarkerSize || string(b[:len(Magic)]) != Magic {
		return n, false
	}
	copy(n[:], b[len(Magic):MarkerSize])
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[n]
	if !ok {
		return n, false
	}
	if !s.now().Before(exp) {
		delete(s.m, n)
		s.count.Store(int32(len(s.m)))
		return n, false
	}
	return n, true
}

func (s *Nonces) dropExpiredLocked() {
	now := s.now()
	for n, exp := range s.m {
		if !now.Before(exp) {
			delete(s.m, n)
		}
	}
}
