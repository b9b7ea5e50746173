package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/recording"
)

func exchange(id uint64, method, target, body string, status int, respBody string) *recording.Exchange {
	return &recording.Exchange{
		ID: id, Time: time.Unix(1000, int64(id)*int64(10*time.Millisecond)), Pod: "orders-x2x",
		Request: recording.Message{Method: method, Target: target, Host: "orders", Body: []byte(body), BodySize: int64(len(body)),
			Header:   http.Header{"Content-Type": {"application/json"}, "Authorization": {recording.Redacted}, "X-Trace": {"t1"}, "Connection": {"keep-alive"}},
			Redacted: []string{"Authorization"}},
		Response: &recording.Message{Status: status, Body: []byte(respBody), BodySize: int64(len(respBody)),
			Header: http.Header{"Content-Type": {"application/json"}, "Date": {"yesterday"}}},
	}
}

func ref(e *recording.Exchange) string { return fmt.Sprintf("x2x.%d", e.ID) }

func TestRequestCarriesWhatWasRecorded(t *testing.T) {
	type seen struct {
		Method, Path, Query, Host, Body, Auth, Trace, Conn string
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, string(b), r.Header.Get("Authorization"), r.Header.Get("X-Trace"), r.Header.Get("Connection")})
		mu.Unlock()
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	exs := []*recording.Exchange{exchange(1, "POST", "/orders?x=1", `{"a":1}`, 201, ""), exchange(2, "GET", "/orders/7", "", 200, "")}
	sum, err := Run(context.Background(), srv.Client(), exs, ref, Options{Base: base, KeepHost: true}, func(Result) error { return nil })
	if err != nil || sum.Sent != 2 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	want := []seen{{"POST", "/orders", "x=1", "orders", `{"a":1}`, "", "t1", ""}, {"GET", "/orders/7", "", "orders", "", "", "t1", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	// A redacted header is sent only when the user gives its value.
	got = nil
	_, err = Run(context.Background(), srv.Client(), exs[:1], ref, Options{Base: base, Header: http.Header{"Authorization": {"Bearer mine"}}},
		func(Result) error { return nil })
	if err != nil || len(got) != 1 || got[0].Auth != "Bearer mine" || got[0].Host == "orders" {
		t.Errorf("with --header: %+v, %v", got, err)
	}

	// A truncated body is skipped, not replayed half.
	tr := exchange(3, "POST", "/upload", "part", 200, "")
	tr.Request.Truncated, tr.Request.BodySize = true, 1000
	var results []Result
	sum, _ = Run(context.Background(), srv.Client(), []*recording.Exchange{tr}, ref, Options{Base: base}, func(r Result) error { results = append(results, r); return nil })
	if sum.Skipped != 1 || !strings.Contains(results[0].Skipped, "4 of 1000 bytes") {
		t.Errorf("truncated: %+v %+v", sum, results)
	}
}

func TestDiff(t *testing.T) {
	total := 89.0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Date", "today")
		json.NewEncoder(w).Encode(map[string]any{"id": 7, "total": total, "items": []string{"grinder"}})
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	rec := exchange(1, "GET", "/orders/7", "", 200, `{"id":7,"total":89,"items":["grinder"]}`)
	run := func() []Result {
		var rs []Result
		if _, err := Run(context.Background(), srv.Client(), []*recording.Exchange{rec}, ref, Options{Base: base, Diff: true},
			func(r Result) error { rs = append(rs, r); return nil }); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	if r := run(); !r[0].Diff.Empty() {
		t.Errorf("same answer (89 vs 89.0, another Date): diff %+v", r[0].Diff)
	}
	total = 44.5
	r := run()
	if diff := cmp.Diff([]string{"$.total: 89 -> 44.5"}, r[0].Diff.Body); diff != "" || r[0].Diff.Status != "" || len(r[0].Diff.Headers) != 0 {
		t.Errorf("changed field: %+v (-want +got)\n%s", r[0].Diff, diff)
	}
	d := Compare(rec.Response, &recording.Message{Status: 500, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("boom")}, nil)
	if d.Status != "200 -> 500" || len(d.Headers) != 1 || len(d.Body) != 1 {
		t.Errorf("status, header and non-JSON body: %+v", d)
	}
}

// TestPacing checks the schedule the pacer computes (no wall-clock
// assertions) and that requests go out in recorded order.
func TestPacing(t *testing.T) {
	exs := []*recording.Exchange{exchange(1, "GET", "/a", "", 200, ""), exchange(2, "GET", "/b", "", 200, ""), exchange(3, "GET", "/c", "", 200, "")}
	schedule := func(o Options) []time.Duration {
		p := newPacer(o, time.Time{})
		var got []time.Duration
		for round := 1; round <= 2; round++ {
			for i := range exs {
				got = append(got, p.offset(exs, i, round))
				p.sent++
			}
		}
		return got
	}
	ms := time.Millisecond
	// Recorded 10 ms apart; half speed doubles the gaps, rounds follow on.
	if diff := cmp.Diff([]time.Duration{0, 20 * ms, 40 * ms, 40 * ms, 60 * ms, 80 * ms}, schedule(Options{Speed: 0.5})); diff != "" {
		t.Errorf("--speed 0.5x (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{0, 100 * ms, 200 * ms, 300 * ms, 400 * ms, 500 * ms}, schedule(Options{Rate: 10})); diff != "" {
		t.Errorf("--rate 10/s (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{0, 0, 0, 0, 0, 0}, schedule(Options{})); diff != "" {
		t.Errorf("no pacing (-want +got)\n%s", diff)
	}

	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	shuffled := []*recording.Exchange{exs[2], exs[0], exs[1]}
	sum, err := Run(context.Background(), srv.Client(), shuffled, ref, Options{Base: base, Speed: 100, Count: 2}, func(Result) error { return nil })
	if err != nil || sum.Sent != 6 {
		t.Fatalf("%+v %v", sum, err)
	}
	if diff := cmp.Diff([]string{"/a", "/b", "/c", "/a", "/b", "/c"}, paths); diff != "" {
		t.Errorf("order (-want +got)\n%s", diff)
	}
	if err := (Options{Base: base, Rate: 10, Speed: 2}).Validate(); err == nil {
		t.Error("--rate with --speed must be refused")
	}
}

// TestRecurrence: each answer is checked for the failure being
// reproduced: the recorded answer by default, else every --expect
// condition (the body read only for those that need it); a connection
// that breaks counts for "error".
func TestRecurrence(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get(ReplayHeader); got != "x2x.1" && got != "x2x.2" {
			t.Errorf("%s: %s %q, want the exchange's name", r.URL.Path, ReplayHeader, got)
		}
		i := n.Add(1)
		switch {
		case r.URL.Path == "/reset":
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
		case i%2 == 1: // odd answers fail
			w.WriteHeader(500)
			io.WriteString(w, `{"error":"pricing: no discount rule"}`)
		default:
			io.WriteString(w, `{"total":44.5}`)
		}
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	checkout := exchange(1, "POST", "/orders/42/checkout", "", 500, `{"error":"x"}`)
	reset := exchange(2, "GET", "/reset", "", 200, `{}`)
	reset.Response = nil // nothing was answered when recorded
	count := func(o Options, exs ...*recording.Exchange) (recurred, checked int, sum Summary) {
		t.Helper()
		n.Store(0)
		o.Base, o.Count = base, 4
		sum, err := Run(context.Background(), srv.Client(), exs, ref, o, func(r Result) error {
			if r.Recurred != nil {
				checked++
				if *r.Recurred {
					recurred++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return recurred, checked, sum
	}
	if r, c, sum := count(Options{ExpectRecorded: true}, checkout); r != 2 || c != 4 || sum.Recurred != 2 {
		t.Errorf("the recorded 500: recurred %d of %d (summary %d), want 2 of 4", r, c, sum.Recurred)
	}
	if r, c, _ := count(Options{ExpectRecorded: true}, reset); r != 4 || c != 4 {
		t.Errorf("the recorded lack of an answer: recurred %d of %d, want 4 of 4", r, c)
	}
	expect := func(xs ...string) []Expect {
		var out []Expect
		for _, x := range xs {
			e, err := ParseExpect(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
		return out
	}
	if r, _, _ := count(Options{Expect: expect("status=5xx", `json:$.error="pricing: no discount rule"`)}, checkout); r != 2 {
		t.Errorf("status and JSON field: recurred %d of 4, want 2", r)
	}
	if r, _, _ := count(Options{Expect: expect("json:$.total=44.5")}, checkout); r != 2 {
		t.Errorf("the fixed answer's field: recurred %d of 4, want 2", r)
	}
	if r, _, _ := count(Options{Expect: expect("status=5xx", "json:$.total")}, checkout); r != 0 {
		t.Errorf("conditions no one answer meets together: recurred %d of 4, want 0", r)
	}
	if r, c, _ := count(Options{}, checkout); r != 0 || c != 0 {
		t.Errorf("not asked: %d of %d checked, want none", r, c)
	}
}
