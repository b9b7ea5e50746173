package server

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
)

// TestProbeService: through a real tunnel, the agent answers a readiness
// probe to its front port only with the nonce the daemon registered, on
// each of the port's paths (to the app, the whole connection to the
// laptop, the router), and forgets it when told.
func TestProbeService(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("0123456789abcdef")
	front := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.frontPort))
	check := func(what string, wantReady bool) {
		t.Helper()
		res, err := client.ProbeService(ctx, agent.ServiceProbeRequest{Address: front, Nonce: nonce, Expect: []string{"orders-1"},
			Timeout: time.Second})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Ready != wantReady || (wantReady && res.Answered["orders-1"] == 0) || (!wantReady && res.Missed == 0) {
			t.Errorf("%s: %+v, want ready %v", what, res, wantReady)
		}
	}

	check("no nonce registered", false)
	if err := client.ExpectProbe(ctx, nonce, time.Minute, false); err != nil {
		t.Fatal(err)
	}
	check("to the app", true)
	if got := h.get(); got != "app" {
		t.Errorf("a request while probes are expected: %q, want app", got)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "all"}); err != nil {
		t.Fatal(err)
	}
	check("intercepted", true)
	if got := h.get(); got != "laptop" {
		t.Errorf("intercepted request while probes are expected: %q, want laptop", got)
	}
	if err := client.Leave(ctx, h.frontPort, ""); err != nil {
		t.Fatal(err)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "ana",
		Filter: httpfilter.Spec{Headers: []string{"x-user=ana"}}}); err != nil {
		t.Fatal(err)
	}
	check("routed", true)
	if err := client.ExpectProbe(ctx, nonce, 0, true); err != nil {
		t.Fatal(err)
	}
	check("forgotten", false)

	if err := client.ExpectProbe(ctx, []byte("short"), time.Minute, false); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("short nonce: %v, want ErrBadProbe", err)
	}
	if _, err := client.ProbeService(ctx, agent.ServiceProbeRequest{Address: "nowhere", Nonce: nonce, Expect: []string{"x"}}); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("address without a port: %v, want ErrBadProbe", err)
	}
	if _, err := client.ProbeService(ctx, agent.ServiceProbeRequest{Address: front, Nonce: nonce}); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("no pod expected: %v, want ErrBadProbe", err)
	}
}
