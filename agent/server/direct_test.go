package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// countingConn counts the bytes a "port-forward" carries.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// pipeDaemon links to h's agent over a net.Pipe standing for the
// port-forward (counting its bytes), and serves the conn streams to
// laptopPort as the daemon does.
func (h *harness) pipeDaemon(laptopPort int) (*agent.Link, *atomic.Int64) {
	h.t.Helper()
	a, b := net.Pipe()
	go h.agent.serveTunnel(h.t.Context(), b)
	n := new(atomic.Int64)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	link, err := agent.Connect(ctx, countingConn{a, n}, tunnel.DefaultConfig(testToken))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { link.Close() })
	go func() {
		for {
			st, err := link.AcceptConn(context.Background())
			if err != nil {
				return
			}
			go func() {
				l, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", laptopPort))
				if err != nil {
					st.Close()
					return
				}
				tunnel.Join(st, l)
			}()
		}
	}()
	return link, n
}

func offer(t *testing.T, link *agent.Link, id *tunnel.Identity, timeout time.Duration) error {
	t.Helper()
	return link.OfferDirect(t.Context(), agent.DirectOffer{ListenAddr: netip.MustParseAddr("127.0.0.1"),
		Identity: id, Timeout: timeout})
}

// post sends size bytes to the agent's front port and returns the answer.
func (h *harness) post(size int) string {
	h.t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Post(fmt.Sprintf("http://127.0.0.1:%d/", h.frontPort), "text/plain", strings.NewReader(strings.Repeat("x", size)))
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// sink serves HTTP on loopback: it reads the whole body, then answers
// with its name.
func sink(t *testing.T, name string) (port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func newIdentity(t *testing.T) *tunnel.Identity {
	t.Helper()
	id, err := tunnel.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDirectPathCarriesTheData: once the offer succeeds, intercepted
// connections and dial streams travel over the direct path, not the
// port-forward; control calls still work.
func TestDirectPathCarriesTheData(t *testing.T) {
	h := newHarness(t)
	laptop := sink(t, "laptop")
	link, pfBytes := h.pipeDaemon(laptop)
	if err := link.Agent().Intercept(t.Context(), agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	if got := link.Path(); got != agent.PathPortForward {
		t.Fatalf("Path before the offer = %s", got)
	}
	if err := offer(t, link, newIdentity(t), 5*time.Second); err != nil {
		t.Fatalf("OfferDirect: %v", err)
	}
	if got := link.Path(); got != agent.PathDirect {
		t.Fatalf("Path after the offer = %s, want direct", got)
	}
	before := pfBytes.Load()
	const size = 256 << 10
	for i := range 4 {
		if got := h.post(size); got != "laptop" {
			t.Fatalf("request %d: %q, want laptop", i, got)
		}
	}
	app := sink(t, "dialed")
	c, err := link.Dial(t.Context(), fmt.Sprintf("127.0.0.1:%d", app))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", size, strings.Repeat("y", size))
	if b, _ := io.ReadAll(c); !strings.HasSuffix(string(b), "dialed") {
		t.Fatalf("dialed answer: %q", b)
	}
	c.Close()
	if _, err := link.Agent().Info(t.Context()); err != nil {
		t.Fatalf("Info with the direct path open: %v", err)
	}
	// 5 x 256 KiB went through the tunnel; the port-forward carried only
	// the control calls and keepalives.
	if moved := pfBytes.Load() - before; moved > size/2 {
		t.Fatalf("the port-forward carried %d bytes of the %d sent: the data did not take the direct path", moved, 5*size)
	}
}

// TestDirectPathDiesPortForwardGoesOn: a direct path that dies leaves the
// port-forward working for new streams; closing the port-forward closes
// the direct path.
func TestDirectPathDiesPortForwardGoesOn(t *testing.T) {
	h := newHarness(t)
	laptop := named(t, "laptop")
	link, _ := h.pipeDaemon(laptop)
	if err := link.Agent().Intercept(t.Context(), agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	if err := offer(t, link, newIdentity(t), 5*time.Second); err != nil {
		t.Fatalf("OfferDirect: %v", err)
	}
	h.agent.mu.Lock()
	var direct *tunnel.Session
	for _, d := range h.agent.directs {
		direct = d
	}
	h.agent.mu.Unlock()
	if direct == nil {
		t.Fatal("the agent holds no direct path")
	}
	direct.Close()
	waitFor(t, "the link to notice", func() bool { return link.Path() == agent.PathPortForward })
	for i := range 3 {
		if got := h.get(); got != "laptop" {
			t.Fatalf("request %d after the direct path died: %q, want laptop", i, got)
		}
	}
	app := named(t, "dialed")
	c, err := link.Dial(t.Context(), fmt.Sprintf("127.0.0.1:%d", app))
	if err != nil {
		t.Fatalf("Dial after the direct path died: %v", err)
	}
	c.Close()

	// A second offer works, and closing the link closes it on the agent.
	if err := offer(t, link, newIdentity(t), 5*time.Second); err != nil {
		t.Fatalf("second OfferDirect: %v", err)
	}
	link.Close()
	waitFor(t, "the agent to drop the direct path", func() bool {
		h.agent.mu.Lock()
		defer h.agent.mu.Unlock()
		return len(h.agent.directs) == 0
	})
	if got := h.get(); got != "app" {
		t.Fatalf("after the link closed: %q, want app", got)
	}
}

// TestDirectOfferUnreachableFallsBack: an agent whose connection to the
// laptop goes nowhere (dropped, as by a firewall) makes the offer fail
// with ErrNoDirectPath once its timeout passes; the link goes on over the
// port-forward.
func TestDirectOfferUnreachableFallsBack(t *testing.T) {
	h := newHarness(t)
	var dials atomic.Int32
	h.agent.dialDirect = func(ctx context.Context, addr string, der []byte, cfg tunnel.Config) (*tunnel.Session, error) {
		dials.Add(1)
		<-ctx.Done() // SYNs dropped
		return nil, fmt.Errorf("dial tcp %s: %w", addr, ctx.Err())
	}
	laptop := named(t, "laptop")
	link, _ := h.pipeDaemon(laptop)
	if err := link.Agent().Intercept(t.Context(), agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := offer(t, link, newIdentity(t), 300*time.Millisecond)
	if !errors.Is(err, agent.ErrNoDirectPath) {
		t.Fatalf("OfferDirect = %v, want %v", err, agent.ErrNoDirectPath)
	}
	if took := time.Since(start); took > 5*time.Second { // hang guard, not a timing assertion
		t.Fatalf("the offer took %s", took)
	}
	if got := link.Path(); got != agent.PathPortForward {
		t.Fatalf("Path = %s", got)
	}
	if got := h.get(); got != "laptop" {
		t.Fatalf("request over the port-forward: %q", got)
	}

	// What --path makes of it: auto goes on, and skips the pod for a while
	// after a failure; direct is the user's error; port-forward does not
	// even ask.
	c := &agent.PathChooser{Identity: newIdentity(t), ListenAddr: netip.MustParseAddr("127.0.0.1"), Timeout: 200 * time.Millisecond}
	pod := netip.MustParseAddr("10.42.0.7")
	if err := c.Use(t.Context(), link, agent.PathAuto, pod); err != nil {
		t.Errorf("Use(auto) = %v, want nil (fall back)", err)
	}
	asked := dials.Load()
	if err := c.Use(t.Context(), link, agent.PathAuto, pod); err != nil || dials.Load() != asked {
		t.Errorf("Use(auto) again = %v, agent asked again: %v (the failure is remembered)", err, dials.Load() != asked)
	}
	err = c.Use(t.Context(), link, agent.PathDirect, pod)
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), "--path direct: the pod (10.42.0.7) cannot open a connection") ||
		!strings.Contains(err.Error(), "--path port-forward") {
		t.Errorf("Use(direct) = %v, want a user error with the reason and what to do", err)
	}
	if dials.Load() == asked {
		t.Errorf("Use(direct) did not try (direct always tries)")
	}
	asked = dials.Load()
	if err := c.Use(t.Context(), link, agent.PathPortForward, pod); err != nil || dials.Load() != asked {
		t.Errorf("Use(port-forward) = %v, agent asked to dial: %v", err, dials.Load() != asked)
	}
}

// TestDirectNeedsTheCurrentToken: an inspection agent whose bootstrap
// token opened the port-forward tunnel refuses a direct path proven with
// that spent token; after Rotate, the rotated token opens it.
func TestDirectNeedsTheCurrentToken(t *testing.T) {
	h, _ := bootstrapHarness(t)
	link, _ := h.pipeDaemon(1)
	err := offer(t, link, newIdentity(t), 2*time.Second)
	if !errors.Is(err, agent.ErrNoDirectPath) {
		t.Fatalf("offer with the spent bootstrap token = %v, want %v", err, agent.ErrNoDirectPath)
	}
	rotated := []byte("rotated-token-0123456789abcdef")
	if err := link.Rotate(t.Context(), rotated); err != nil {
		t.Fatal(err)
	}
	if err := link.OfferDirect(t.Context(), agent.DirectOffer{ListenAddr: netip.MustParseAddr("127.0.0.1"),
		Identity: newIdentity(t), Timeout: 2 * time.Second}); err != nil {
		t.Fatalf("offer with the rotated token: %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
