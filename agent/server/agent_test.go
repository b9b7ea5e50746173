package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/pktfilter"
	"github.com/tetherkube/tether/tunnel"
)

var testToken = []byte("agent-test-token-0123456789")

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Token = testToken
		c.Forwards = []agent.Forward{{ListenPort: 18080, AppPort: 8080}}
		return c
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"ipv6 loopback", func(c *Config) { c.TunnelAddr = "[::1]:7341" }, ""},
		{"all interfaces", func(c *Config) { c.TunnelAddr = "0.0.0.0:7341" }, "not a loopback address"},
		{"no host", func(c *Config) { c.TunnelAddr = ":7341" }, "not a loopback address"},
		{"no port", func(c *Config) { c.TunnelAddr = "127.0.0.1" }, "missing port"},
		{"short token", func(c *Config) { c.Token = []byte("x") }, "token is 1 bytes"},
		{"same port", func(c *Config) { c.Forwards = []agent.Forward{{ListenPort: 8080, AppPort: 8080}} }, "cannot listen on the app's own port"},
		{"port range", func(c *Config) { c.Forwards = []agent.Forward{{ListenPort: 0, AppPort: 8080}} }, "out of range"},
		{"twice", func(c *Config) {
			c.Forwards = []agent.Forward{{ListenPort: 1, AppPort: 2}, {ListenPort: 1, AppPort: 3}}
		}, "forwarded twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseForward(t *testing.T) {
	if f, err := parseForward("18080:8080"); err != nil || f != (agent.Forward{ListenPort: 18080, AppPort: 8080}) {
		t.Errorf("parseForward = %v, %v", f, err)
	}
	for _, bad := range []string{"8080", "a:b", ":"} {
		if _, err := parseForward(bad); err == nil {
			t.Errorf("parseForward(%q) accepted", bad)
		}
	}
}

// named serves HTTP on loopback answering with its name.
func named(t *testing.T, name string) (port int) {
	t.Helper()
	return namedFunc(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}

// namedFunc serves h on loopback.
func namedFunc(t *testing.T, h http.HandlerFunc) (port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// harness runs an agent in front of an "app" server, on loopback listeners.
type harness struct {
	t          *testing.T
	agent      *Agent
	tunnelAddr string
	frontPort  int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessFor(t, named(t, "app"), nil)
}

// newHarnessFor runs an agent in front of appPort, its Config changed by
// edit (when not nil).
func newHarnessFor(t *testing.T, appPort int, edit func(*Config)) *harness {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frontPort := fl.Addr().(*net.TCPAddr).Port
	cfg := DefaultConfig()
	cfg.Token = testToken
	cfg.PodName, cfg.PodNamespace = "orders-1", "shop"
	cfg.Forwards = []agent.Forward{{ListenPort: frontPort, AppPort: appPort}}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeListeners(ctx, tl, []net.Listener{fl}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListeners: %v", err)
		}
	})
	return &harness{t: t, agent: a, tunnelAddr: tl.Addr().String(), frontPort: frontPort}
}

// daemon opens a tunnel as the daemon does and sends the conn streams it
// accepts to laptopPort.
func (h *harness) daemon(token []byte, laptopPort int) (*agent.Link, *agent.Client, error) {
	c, err := net.Dial("tcp", h.tunnelAddr)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	link, err := agent.Connect(ctx, c, tunnel.DefaultConfig(token))
	if err != nil {
		return nil, nil, err
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
	return link, link.Agent(), nil
}

// get sends a request to the agent's front port on a new connection.
func (h *harness) get() string {
	h.t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", h.frontPort))
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestInterceptLeaveAndTunnelLoss(t *testing.T) {
	h := newHarness(t)
	laptop := named(t, "laptop")
	ctx := context.Background()

	if got := h.get(); got != "app" {
		t.Fatalf("before intercept: %q, want app", got)
	}
	sess, client, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.PodName != "orders-1" || len(info.Forwards) != 1 || info.Forwards[0].Intercepted {
		t.Errorf("info before intercept = %+v", info)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(); got != "laptop" {
		t.Errorf("intercepted: %q, want laptop", got)
	}
	if info, _ := client.Info(ctx); !info.Forwards[0].Intercepted {
		t.Errorf("info does not show the intercept: %+v", info)
	}
	if err := client.Leave(ctx, h.frontPort, ""); err != nil {
		t.Fatal(err)
	}
	if got := h.get(); got != "app" {
		t.Errorf("after leave: %q, want app", got)
	}

	// A tunnel that goes away takes its intercepts with it.
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	<-sess.Done()
	deadline := time.Now().Add(10 * time.Second) // hang guard
	for h.get() != "app" {
		if time.Now().After(deadline) {
			t.Fatal("connections never went back to the app after the tunnel closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInterceptErrors(t *testing.T) {
	h := newHarness(t)
	laptop := named(t, "laptop")
	ctx := context.Background()

	if _, _, err := h.daemon([]byte("wrong-token-of-enough-length"), laptop); !errors.Is(err, tunnel.ErrBadToken) {
		t.Errorf("bad token: %v, want ErrBadToken", err)
	}
	_, first, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Intercept(ctx, agent.InterceptSpec{ListenPort: 1}); !errors.Is(err, agent.ErrUnknownPort) {
		t.Errorf("unknown port: %v, want ErrUnknownPort", err)
	}
	if err := first.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	_, second, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort}); !errors.Is(err, agent.ErrAlreadyIntercepted) {
		t.Errorf("second intercept: %v, want ErrAlreadyIntercepted", err)
	}
}

// TestLaptopGoneFailsFast: with the laptop's process gone, an intercepted
// caller sees its connection closed at once, not a hang.
func TestLaptopGoneFailsFast(t *testing.T) {
	h := newHarness(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, client, err := h.daemon(testToken, deadPort)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Intercept(context.Background(), agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(); !strings.HasPrefix(got, "error: ") {
		t.Errorf("with nothing on the laptop port: %q, want a connection error", got)
	}
}

// TestCaptureThroughTunnel captures loopback traffic through the agent's
// Capture API over a real tunnel, as the daemon will.
func TestCaptureThroughTunnel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("capturing needs CAP_NET_RAW; make test runs as root")
	}
	h := newHarness(t)
	target := named(t, "captured")
	_, client, err := h.daemon(testToken, target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Capture(context.Background(), agent.CaptureRequest{Interface: "lo", Filter: "tcp port eighty"}, nil); !errors.Is(err, agent.ErrBadFilter) {
		t.Errorf("bad filter: %v, want ErrBadFilter", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			http.Get(fmt.Sprintf("http://127.0.0.1:%d/", target))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var got []agent.CapturedPacket
	stats, err := client.Capture(ctx, agent.CaptureRequest{Interface: "lo", Filter: fmt.Sprintf("tcp dst port %d", target), Count: 5},
		func(b []agent.CapturedPacket) error { got = append(got, b...); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || stats.Received < 5 {
		t.Errorf("got %d packets, stats %+v; want 5", len(got), stats)
	}
	for _, p := range got {
		if pk := pktfilter.FromFrame(p.Data); int(pk.DstPort) != target {
			t.Errorf("captured a packet to port %d, want %d", pk.DstPort, target)
		}
	}
}
