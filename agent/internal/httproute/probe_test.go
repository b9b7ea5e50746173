package httproute

import (
	"net"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent/internal/readyprobe"
	"github.com/tetherkube/tether/httpfilter"
)

// TestReadinessProbe: a readiness probe with a nonce the agent expects is
// answered in the sniff and reaches neither the app nor a laptop; one
// with another nonce is bytes like any other, to the app; HTTP is routed
// as before.
func TestReadinessProbe(t *testing.T) {
	app := newBackend(t, "app", nil)
	laptop := newBackend(t, "ana", nil)
	nonces := readyprobe.NewNonces(nil)
	var n, other readyprobe.Nonce
	n[0], other[0] = 1, 2
	nonces.Expect(n, time.Minute)
	r, addr := front(t, app, Config{Probe: func(c net.Conn, first []byte) bool { return nonces.Answer(c, first, "orders-1") }})
	r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}, Dial: laptop.dial}})

	probe := func(nc readyprobe.Nonce) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second)) // hang guard
		c.Write(readyprobe.Marker(nc))
		return readyprobe.ReadAnswer(c, nc)
	}
	if pod, err := probe(n); err != nil || pod != "orders-1" {
		t.Errorf("probe = %q, %v; want orders-1", pod, err)
	}
	if got := app.conns.Load() + laptop.conns.Load(); got != 0 {
		t.Errorf("a probe opened %d connections upstream, want none", got)
	}
	if s := r.Stats(); s.NotHTTP != 0 {
		t.Errorf("a probe was counted as not HTTP: %+v", s)
	}

	// Another nonce: bytes like any other, to the app.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second)) // hang guard
	c.Write(readyprobe.Marker(other))
	c.(*net.TCPConn).CloseWrite()
	if pod, err := readyprobe.ReadAnswer(c, other); err == nil {
		t.Errorf("a stranger's marker was answered by %q", pod)
	}
	c.Close()
	if app.conns.Load() != 1 {
		t.Errorf("a stranger's marker: app connections %d, want 1", app.conns.Load())
	}

	cl := oneConnClient(false)
	if got := get(t, cl, "http://"+addr+"/x", "x-user", "ana"); got != "ana /x" {
		t.Errorf("HTTP after probes: %q, want ana /x", got)
	}
}
