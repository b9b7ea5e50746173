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

	"github.com/google/go-cmp/cmp"

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

	// Rules that were stale and no longer are: the connections that met a
	// gone endpoint still hang (for a minute here), and the streak since
	// is enough. Checking for none in flight would wait out their minute.
	t.Run("stale rules applied while connections still hang", func(t *testing.T) {
		var n0 atomic.Int64
		staleFor := int64(6)
		addr := serve(t, func(c net.Conn) {
			to := a
			if i := n0.Add(1); i <= staleFor && i%2 == 0 {
				to = silent
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				return
			}
			tunnel.Join(c, up)
		})
		res, err := Probe(context.Background(), Request{Address: addr, Nonce: n, Expect: []string{"orders-a"},
			Timeout: 20 * time.Second, ConnTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Ready || res.Answered["orders-a"] < 24 {
			t.Errorf("Probe = %+v; want ready, 24 answers or more", res)
		}
	})
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

// TestStreak: the streak counts connections by the order they started, so
// a miss reported late for a connection started early does not end it,
// and one started later does.
func TestStreak(t *testing.T) {
	type result struct {
		seq  int
		good bool
	}
	for _, tc := range []struct {
		name    string
		results []result
		run     int
		news    []bool // add's newMiss per result
	}{
		{"in order", []result{{1, true}, {2, true}, {3, true}}, 3, []bool{false, false, false}},
		{"a miss started first, reported last", []result{{2, true}, {3, true}, {4, true}, {1, false}}, 3, []bool{false, false, false, false}},
		{"a miss started last", []result{{1, true}, {2, true}, {3, false}, {4, true}}, 1, []bool{false, false, true, false}},
		{"a hole still in flight", []result{{1, true}, {3, true}, {4, true}}, 2, []bool{false, false, false}},
		{"the hole answered", []result{{1, true}, {3, true}, {4, true}, {2, true}}, 4, []bool{false, false, false, false}},
		{"the hole missed", []result{{1, true}, {3, true}, {4, true}, {2, false}}, 2, []bool{false, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s streak
			var news []bool
			for _, r := range tc.results {
				news = append(news, s.add(r.seq, r.good))
			}
			if s.run != tc.run {
				t.Errorf("run = %d, want %d", s.run, tc.run)
			}
			if diff := cmp.Diff(tc.news, news); diff != "" {
				t.Errorf("misses that were news (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProbeBurst: once connections reach the agents, the rest of the
// streak goes several at once, not one after another. Pace is long here,
// so without the burst no two connections would ever overlap.
func TestProbeBurst(t *testing.T) {
	n := nonce(5)
	expecting := NewNonces(nil)
	expecting.Expect(n, time.Minute)
	agent := agentAt(t, expecting, "orders-a", httpApp(t))
	for _, tc := range []struct {
		burst    int
		wantMost int64
	}{{burst: 8, wantMost: 2}, {burst: 1, wantMost: 1}} {
		// The Service holds each connection a moment before passing it
		// on, so connections started together are seen together.
		var open, most atomic.Int64
		addr := serve(t, func(c net.Conn) {
			now := open.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			open.Add(-1)
			up, err := net.Dial("tcp", agent)
			if err != nil {
				c.Close()
				return
			}
			tunnel.Join(c, up)
		})
		res, err := Probe(context.Background(), Request{Address: addr, Nonce: n, Expect: []string{"orders-a"},
			Timeout: 20 * time.Second, Pace: time.Minute, Burst: tc.burst})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Ready || res.Answered["orders-a"] < 24 || res.Missed+res.Failed > 0 {
			t.Errorf("burst %d: Probe = %+v; want ready, 24 answers or more, no miss", tc.burst, res)
		}
		if got := most.Load(); (tc.wantMost > 1 && got < tc.wantMost) || (tc.wantMost == 1 && got != 1) {
			t.Errorf("burst %d: at most %d connections at once; want %d", tc.burst, got, tc.wantMost)
		}
	}
}
