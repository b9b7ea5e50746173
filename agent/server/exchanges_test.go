package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/recording"
)

// TestRecordsAppAndLaptopExchanges sends requests that go to the app, then
// through an intercept to the "laptop", and lists them over the tunnel.
func TestRecordsAppAndLaptopExchanges(t *testing.T) {
	h := newHarness(t)
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := h.get(); got != "app" {
		t.Fatalf("before the intercept: %q", got)
	}
	// The recorder parses after forwarding: wait until the first exchange
	// is recorded, so the two are stored in the order they were sent.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := client.Exchanges(ctx, agent.ExchangesRequest{WithoutBodies: true}, func([]*recording.Exchange) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if st.Exchanges == 1 || time.Now().After(deadline) {
			break
		}
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(); got != "laptop" {
		t.Fatalf("intercepted: %q", got)
	}
	var got []*recording.Exchange
	deadline := time.Now().Add(5 * time.Second)
	var st agent.RecordingStats
	for len(got) < 2 && time.Now().Before(deadline) {
		got = nil
		st, err = client.Exchanges(ctx, agent.ExchangesRequest{}, func(b []*recording.Exchange) error { got = append(got, b...); return nil })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 2 || got[0].Destination != recording.ToApp || got[1].Destination != recording.ToLaptop ||
		string(got[0].Response.Body) != "app" || string(got[1].Response.Body) != "laptop" || got[0].Pod != "orders-1" {
		t.Fatalf("recorded %+v", got)
	}
	if st.Exchanges != 2 || st.BudgetBytes != DefaultRecordBudget || st.RedactionOff {
		t.Errorf("stats %+v", st)
	}
	// Filters and body-less listing.
	var listed []*recording.Exchange
	if _, err := client.Exchanges(ctx, agent.ExchangesRequest{Limit: 1, WithoutBodies: true}, func(b []*recording.Exchange) error {
		listed = append(listed, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != got[1].ID || listed[0].Response.Body != nil || listed[0].Response.BodySize != 6 {
		t.Errorf("limit 1 without bodies: %+v", listed)
	}
	if _, err := client.Exchanges(ctx, agent.ExchangesRequest{Filter: recording.Filter{Status: "6xx"}}, func([]*recording.Exchange) error { return nil }); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("bad status filter: %v", err)
	}
}

// TestLargeExchangeCrossesTheWire: an exchange whose body is as large as
// the body cap allows (here 6 MiB, over gRPC's 4 MiB default message size)
// is listed over the tunnel, not refused for the whole workload (issue 9,
// finding 8).
func TestLargeExchangeCrossesTheWire(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 6<<20)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(big) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	h := newHarnessFor(t, l.Addr().(*net.TCPAddr).Port, func(c *Config) {
		c.Record.Budget, c.Record.BodyCap = 32<<20, 8<<20
	})
	_, client, err := h.daemon(testToken, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.get(); len(got) != len(big) {
		t.Fatalf("the app's answer arrived with %d bytes", len(got))
	}
	var got []*recording.Exchange
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = nil
		if _, err := client.Exchanges(context.Background(), agent.ExchangesRequest{}, func(b []*recording.Exchange) error {
			got = append(got, b...)
			return nil
		}); err != nil {
			t.Fatalf("list the exchanges: %v", err)
		}
	}
	if len(got) != 1 || len(got[0].Response.Body) != len(big) {
		t.Fatalf("listed %d exchanges (first: body %d bytes, truncated %v, size %d)", len(got), len(got[0].Response.Body), got[0].Response.Truncated, got[0].Response.BodySize)
	}
}
