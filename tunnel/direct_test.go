package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// acceptDirect runs Accept in the background and returns its outcome.
func acceptDirect(t *testing.T, l *DirectListener, d time.Duration) <-chan error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	out := make(chan error, 1)
	go func() {
		defer cancel()
		s, err := l.Accept(ctx)
		if err == nil {
			t.Cleanup(func() { s.Close() })
			// The session works: the agent's end answers a conn stream.
			st, err2 := s.Open(ctx, RoleConn, nil)
			if err2 == nil {
				st.Close()
			}
			err = err2
		}
		out <- err
	}()
	return out
}

// TestDirectRefusesImpostorsAndAdmitsTheAgent: a peer without TLS, a peer
// without the token, and a daemon with another certificate are refused;
// the agent with the token still gets in afterwards, within the deadline.
func TestDirectRefusesImpostorsAndAdmitsTheAgent(t *testing.T) {
	id := newIdentity(t)
	l, err := ListenDirect(loopback, id, DefaultConfig(testToken))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	result := acceptDirect(t, l, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// No TLS: the listener closes the connection.
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	plain.Write([]byte("TTHR\x02 hello without TLS...................................."))
	plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(plain); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("plain TCP peer: read = %v, want the connection closed", err)
	}
	plain.Close()

	// TLS (trusting anything), but the wrong token: refused.
	if _, err := DialDirect(ctx, addr, id.Certificate(), DefaultConfig([]byte("wrong-token-0123456789abcdef"))); !errors.Is(err, ErrBadToken) {
		t.Fatalf("wrong token: err = %v, want %v", err, ErrBadToken)
	}

	// The agent pins the certificate: another daemon's is refused.
	other := newIdentity(t)
	if _, err := DialDirect(ctx, addr, other.Certificate(), DefaultConfig(testToken)); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("another certificate pinned: err = %v, want %v", err, ErrNotPinned)
	}

	select {
	case err := <-result:
		t.Fatalf("Accept returned before the agent came: %v", err)
	default:
	}

	s, err := DialDirect(ctx, addr, id.Certificate(), DefaultConfig(testToken))
	if err != nil {
		t.Fatalf("the agent: %v", err)
	}
	defer s.Close()
	go func() {
		st, err := s.Accept(ctx)
		if err == nil {
			st.Close()
		}
	}()
	if err := <-result; err != nil {
		t.Fatalf("Accept: %v", err)
	}
	// The listener is closed once the tunnel is up. (Asked of the
	// listener itself: a dial could reach another test's listener given
	// the same ephemeral port moments later.)
	if err := acceptClosed(l); err != nil {
		t.Fatalf("the listener still accepts after the tunnel is up: %v", err)
	}
}

// acceptClosed checks that l's listener is closed: its Accept fails with
// net.ErrClosed (an open one would wait: bounded by a deadline).
func acceptClosed(l *DirectListener) error {
	if tl, ok := l.ln.(*net.TCPListener); ok {
		tl.SetDeadline(time.Now().Add(time.Second))
	}
	if _, err := l.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("Accept = %v, want %v", err, net.ErrClosed)
	}
	return nil
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// TestDirectAcceptEndsAtDeadline: nobody comes, Accept gives up when its
// context ends and closes the listener.
func TestDirectAcceptEndsAtDeadline(t *testing.T) {
	l, err := ListenDirect(loopback, newIdentity(t), DefaultConfig(testToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-acceptDirect(t, l, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept = %v, want %v", err, context.DeadlineExceeded)
	}
	if err := acceptClosed(l); err != nil {
		t.Fatalf("the listener still accepts after the deadline: %v", err)
	}
}

// TestDirectTLSIsPinnedOnly: the agent's TLS trusts no system root, only
// the pinned certificate.
func TestDirectTLSIsPinnedOnly(t *testing.T) {
	id := newIdentity(t)
	cfg := pinnedTLS(id.Certificate())
	if cfg.MinVersion != tls.VersionTLS13 || cfg.RootCAs != nil {
		t.Fatalf("pinned config: min version %x, roots %v", cfg.MinVersion, cfg.RootCAs)
	}
	if err := cfg.VerifyPeerCertificate([][]byte{id.Certificate()}, nil); err != nil {
		t.Fatalf("own certificate: %v", err)
	}
	if err := cfg.VerifyPeerCertificate([][]byte{newIdentity(t).Certificate()}, nil); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("other certificate: %v", err)
	}
	if err := cfg.VerifyPeerCertificate(nil, nil); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("no certificate: %v", err)
	}
}

func TestRouteSourceAndListen(t *testing.T) {
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::1")} {
		if _, err := RouteSource(bad); err == nil {
			t.Errorf("RouteSource(%v) accepted", bad)
		}
	}
	if _, err := ListenDirect(netip.MustParseAddr("0.0.0.0"), newIdentity(t), DefaultConfig(testToken)); err == nil {
		t.Errorf("ListenDirect on 0.0.0.0 accepted")
	}
}
