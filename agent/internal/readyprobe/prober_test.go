package readyprobe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherkube/tether/tunnel"
)

// serve accepts on a new loopback listener and hands each connection to h.
func serve(t testing.TB, h func(c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go h(c)
		}
	}()
	return l.Addr().String()
}

// httpApp is an app: HTTP answering "app" (a marker gets a 400).
func httpApp(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "app") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// agentAt is an agent in front of upstream: the plain path, with Watch.
func agentAt(t testing.TB, s *Nonces, pod, upstream string) string {
	return serve(t, func(c net.Conn) {
		c = s.Watch(c, pod)
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			return
		}
		tunnel.Join(c, up)
	})
}

// balancer is a Service: each connection to the next backend in turn.
func balancer(t testing.TB, backends ...string) string {
	var next atomic.Int64
	return serve(t, func(c net.Conn) {
		up, err := net.Dial("tcp", backends[int(next.Add(1)-1)%len(backends)])
		if err != nil {
			c.Close()
			return
		}
		tunnel.Join(c, up)
	})
}

func TestProbe(t *testing.T) {
	app := httpApp(t)
	n := nonce(3)
	expecting := NewNonces(nil)
	expecting.Expect(n, time.Minute)
	a := agentAt(t, expecting, "orders-a", app)
	b := agentAt(t, expecting, "orders-b", app)
	notTold := agentAt(t, NewNonces(nil), "orders-c", app)
	silent := serve(t, func(c net.Conn) { t.Cleanup(func() { c.Close() }) })
	closed := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().String()
	}()

	for _, tc := range []struct {
		name      string
		addr      string
		expect    []string
		wantReady bool
		// what the result must show
		wantAnswered, wantMissed, wantFailed bool
		connTimeout                          time.Duration
	}{
		{name: "every agent answers", addr: balancer(t, a, b), expect: []string{"orders-a", "orders-b"}, wantReady: true, wantAnswered: true},
		{name: "stale rules still reach the app", addr: balancer(t, a, app), expect: []string{"orders-a"}, wantAnswered: true, wantMissed: true},
		{name: "a silent app behind stale rules", addr: balancer(t, a, silent), expect: []string{"orders-a"}, wantAnswered: true, wantMissed: true},
		// A gone endpoint's connection hangs far longer than the streak
		// takes to fill: the check waits for it.
		{name: "a gone endpoint among agents", addr: balancer(t, a, b, silent), expect: []string{"orders-a", "orders-b"}, wantAnswered: true, wantMissed: true,
			connTimeout: 400 * time.Millisecond},
		{name: "one pod never answers", addr: balancer(t, a, b), expect: []string{"orders-a", "orders-b", "orders-c"}, wantAnswered: true},
		{name: "an agent not told the nonce forwards it", addr: balancer(t, a, notTold), expect: []string{"orders-a", "orders-c"}, wantAnswered: true, wantMissed: true},
		{name: "an unexpected pod's agent", addr: balancer(t, a, b), expect: []string{"orders-a"}, wantAnswered: true, wantMissed: true},
		{name: "unreachable", addr: closed, expect: []string{"orders-a"}, wantFailed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.connTimeout
			if ct == 0 {
				ct = 100 * time.Millisecond
			}
			res, err := Probe(context.Background(), Request{Address: tc.addr, Nonce: n, Expect: tc.expect,
				Timeout: 3 * ct, Unreachable: 200 * time.Millisecond, ConnTimeout: ct})
			if err != nil {
				t.Fatal(err)
			}
			if res.Elapsed <= 0 {
				t.Errorf("elapsed %s", res.Elapsed)
			}
			if res.Ready != tc.wantReady || (len(res.Answered) > 0) != tc.wantAnswered || (res.Missed > 0) != tc.wantMissed || (res.Failed > 0) != tc.wantFailed {
				t.Errorf("Probe = %+v; want ready %v, answered %v, missed %v, failed %v", res, tc.wantReady, tc.wantAnswered, tc.wantMissed, tc.wantFailed)
			}
		})
	}

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Probe(ctx, Request{Address: balancer(t, a, app), Nonce: n, Expect: []string{"orders-a"}}); !errors.Is(err, context.Canceled) {
			t.Errorf("Probe = %v, want context.Canceled", err)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		if _, err := Probe(context.Background(), Request{Address: "nowhere", Nonce: n, Expect: []string{"x"}}); err == nil {
			t.Error("an address without a port was accepted")
		}
		if _, err := Probe(context.Background(), Request{Address: a, Nonce: n}); err == nil {
			t.Error("a check expecting no pod was accepted")
		}
	})
}
