package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// Path is the way a Link's data streams travel.
type Path string

const (
	// PathAuto tries the direct path and falls back to the port-forward.
	PathAuto Path = "auto"
	// PathDirect: the agent connects to the laptop over the pod network.
	PathDirect Path = "direct"
	// PathPortForward: everything goes through the API server's port-forward.
	PathPortForward Path = "port-forward"
)

// Paths lists the values --path takes.
var Paths = []Path{PathAuto, PathDirect, PathPortForward}

// ParsePath reads a --path value; empty is PathAuto.
func ParsePath(s string) (Path, error) {
	if s == "" {
		return PathAuto, nil
	}
	for _, p := range Paths {
		if string(p) == s {
			return p, nil
		}
	}
	return "", errdefs.User("--path %q: want direct, port-forward or auto", s)
}

// DialBackRequest asks the agent to open the direct path to the daemon.
type DialBackRequest struct {
	// Address is host:port on the daemon's machine, as the pod reaches it.
	Address string
	// Certificate is the daemon's certificate (DER), the only one trusted.
	Certificate []byte
	// Timeout bounds the connection and the handshakes.
	Timeout time.Duration
}

// Errors of DialBack.
var (
	ErrNoDirectPath = errdefs.New(errdefs.ErrUnavailable, "NO_DIRECT_PATH", "no direct path between the pod and this machine")
	ErrBadDialBack  = errdefs.New(errdefs.ErrUser, "BAD_DIAL_BACK", "a dial-back request needs an address and a certificate")
)

// DefaultDirectTimeout bounds a direct offer: --path auto falls back to
// the port-forward within it.
const DefaultDirectTimeout = time.Second

// DirectOffer is what the daemon offers an agent for the direct path.
type DirectOffer struct {
	// PodIP is the pod's address: the daemon listens only on the local
	// address its routing uses towards it.
	PodIP netip.Addr
	// Identity is the daemon's TLS key and certificate.
	Identity *tunnel.Identity
	// Timeout bounds the whole offer; zero is DefaultDirectTimeout.
	Timeout time.Duration
	// ListenAddr, when set, is listened on instead of the route's source
	// address towards PodIP (tests on loopback).
	ListenAddr netip.Addr
}

// OfferDirect opens the direct path: it listens on the address the pod
// reaches this machine by, asks the agent to connect there (DialBack) and
// waits for the one connection that passes TLS and the token handshake,
// within the offer's timeout. From then on the Link's data streams use it
// while it lives. An error wraps ErrNoDirectPath with the reason; the Link
// goes on over the port-forward.
func (l *Link) OfferDirect(ctx context.Context, o DirectOffer) error {
	if o.Identity == nil {
		return errors.New("direct offer without an identity")
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultDirectTimeout
	}
	src := o.ListenAddr
	if !src.IsValid() {
		var err error
		if src, err = tunnel.RouteSource(o.PodIP); err != nil {
			return fmt.Errorf("%w: %w", ErrNoDirectPath, err)
		}
	}
	l.mu.Lock()
	cfg := l.cfg // the token the agent accepts now: after Rotate, the new one
	l.mu.Unlock()
	ln, err := tunnel.ListenDirect(src, o.Identity, cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoDirectPath, err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		s   *tunnel.Session
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		s, err := ln.Accept(ctx)
		accepted <- result{s, err}
	}()
	addr := ln.Addr().String()
	// The agent gives up a little before this call does, so that its own
	// reason ("dial tcp ...: i/o timeout") comes back rather than ours.
	if err := l.client.DialBack(ctx, DialBackRequest{Address: addr, Certificate: o.Identity.Certificate(), Timeout: timeout * 3 / 4}); err != nil {
		cancel()
		if r := <-accepted; r.s != nil {
			r.s.Close()
		}
		if errors.Is(err, ErrNoDirectPath) {
			return errdefs.Withf(ErrNoDirectPath, "%s", reason(err))
		}
		return fmt.Errorf("%w: the agent could not connect to %s: %w", ErrNoDirectPath, addr, err)
	}
	r := <-accepted
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrNoDirectPath, r.err)
	}
	l.attachDirect(r.s, addr, time.Since(start))
	return nil
}

// attachDirect makes s the Link's direct session until it or the
// port-forward session ends; closing the port-forward closes it.
func (l *Link) attachDirect(s *tunnel.Session, addr string, took time.Duration) {
	s.ControlListener().Close()
	if old := l.direct.Swap(s); old != nil {
		old.Close()
	}
	go l.pump(s)
	log := l.cfg.Logger
	if log != nil {
		log.Info("direct path open", "listen", addr, "took", took)
	}
	go func() {
		select {
		case <-s.Done():
			if log != nil && !l.closing.Load() {
				log.Warn("the direct path to the agent ended; new streams go over the port-forward", "listen", addr)
			}
		case <-l.sess.Done():
			s.Close()
		}
		l.direct.CompareAndSwap(s, nil)
	}()
}

// liveDirect returns the direct session while it lives, else nil.
func (l *Link) liveDirect() *tunnel.Session {
	s := l.direct.Load()
	if s == nil {
		return nil
	}
	select {
	case <-s.Done():
		return nil
	default:
		return s
	}
}

// DirectDone is closed when the Link's direct session ends; nil while it
// has none. The agent's end of it closes at once when the agent dies,
// where the port-forward session needs its dead-peer check (about 1 s).
func (l *Link) DirectDone() <-chan struct{} {
	if s := l.liveDirect(); s != nil {
		return s.Done()
	}
	return nil
}

// Path says which way the Link's data streams travel now.
func (l *Link) Path() Path {
	if l.liveDirect() != nil {
		return PathDirect
	}
	return PathPortForward
}

// reason is the agent's own words in a DialBack error, without the
// client's prefix.
func reason(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "open the direct path: "); ok {
		return after
	}
	return msg
}
