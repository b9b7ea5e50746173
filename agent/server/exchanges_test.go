package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/httprec"
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

// TestRecordsMirroredCopies: a mirror intercept's copies are recorded
// with the laptop's answers beside the app's exchanges (what `requests
// list` and `replay --diff` pair), redacted like every exchange.
func TestRecordsMirroredCopies(t *testing.T) {
	h := newHarness(t)
	laptop := namedFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"total":44.5,"token":"t0ps3cret"}`)
	})
	_, client, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "m", Owner: "ana", Mirror: true}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+itoa(h.frontPort)+"/orders?x=1", strings.NewReader(`{"item":"mug"}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var got []*recording.Exchange
	for deadline := time.Now().Add(5 * time.Second); len(got) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = nil
		if _, err := client.Exchanges(ctx, agent.ExchangesRequest{}, func(b []*recording.Exchange) error { got = append(got, b...); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var app, copy *recording.Exchange
	for _, e := range got {
		switch e.Destination {
		case recording.ToApp:
			app = e
		case recording.ToMirror:
			copy = e
		}
	}
	if app == nil || copy == nil {
		t.Fatalf("recorded %d exchanges, want the app's and the copy's: %+v", len(got), got)
	}
	for _, m := range []recording.Message{app.Request, copy.Request} {
		if m.Method != "POST" || m.Target != "/orders?x=1" || string(m.Body) != `{"item":"mug"}` || m.Header.Get("Authorization") != recording.Redacted {
			t.Errorf("request recorded as %+v", m)
		}
	}
	if copy.Source != "mirror" || copy.Pod != "orders-1" || copy.Request.Host != app.Request.Host || copy.Response == nil ||
		copy.Response.Status != 200 || string(copy.Response.Body) != `{"total":44.5,"token":"[REDACTED]"}` || copy.Error != "" {
		t.Errorf("the copy recorded as %+v (response %+v)", copy, copy.Response)
	}
}

// TestExchangesReadsAFullRingInLittleMemory: listing a ring of many
// exchanges decodes them a batch at a time. Decoded at once they took
// several times the ring's budget, and an agent at its container's memory
// limit was killed by the kernel mid-listing (the bench's 60,000 passive
// exchanges: OOM at 128 MiB).
func TestExchangesReadsAFullRingInLittleMemory(t *testing.T) {
	h := newHarness(t)
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 60000
	c := h.agent.ring.NewConn(httprec.Meta{Pod: "orders-1", Port: 8080, Source: "10.0.0.9:41000", Destination: recording.ToApp}, h.agent.recOpts)
	for i := range n {
		c.FromClient(fmt.Appendf(nil, "GET /orders/%d?x=%d HTTP/1.1\r\nHost: orders\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n", i, i))
		c.FromServer([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":1234}"))
	}
	c.Close()
	if st := h.agent.ring.Stats(); st.Held < n/2 {
		t.Fatalf("the ring holds %d exchanges, want most of %d: %+v", st.Held, n, st)
	}
	// The collector runs as soon as the heap grows a tenth: the peak is
	// then what the listing holds, not garbage waiting for a collection.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	got := 0
	_, err = client.Exchanges(context.Background(), agent.ExchangesRequest{}, func(b []*recording.Exchange) error {
		got += len(b)
		return nil
	})
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if got < n/2 {
		t.Errorf("listed %d exchanges, want most of %d", got, n)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("listing %d exchanges: the heap's peak %d MiB above where it was", got, grew>>20)
	if grew > 32<<20 {
		t.Errorf("listing %d exchanges took the heap %d MiB above where it was, want under 32 MiB", got, grew>>20)
	}
}
