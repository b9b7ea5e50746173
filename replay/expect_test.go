package replay

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/recording"
)

func TestExpect(t *testing.T) {
	body := []byte(`{"error":"out of stock","code":409,"items":[{"state":"failed"}],"ok":false}`)
	r := Result{Status: 500, Latency: 600 * time.Millisecond, Body: body}
	tests := []struct {
		expect string
		want   bool
	}{
		{"status=500", true},
		{"status!=200", true},
		{"status=5xx", true},
		{"status!=5xx", false},
		{"status>=500", true},
		{"status<500", false},
		{"latency>500ms", true},
		{"latency<=500ms", false},
		{"json:.error=out of stock", true},
		{`json:.error="out of stock"`, true},
		{"json:.error!=out of stock", false},
		{"json:.code=409", true},
		{"json:.ok=false", true},
		{"json:$.items[0].state=failed", true},
		{"json:.items[1].state=failed", false},
		{"json:.items[1].state!=failed", true},
		{"json:.error", true},
		{"json:.missing", false},
		{"error", false},
	}
	for _, tt := range tests {
		e, err := ParseExpect(tt.expect)
		if err != nil {
			t.Errorf("%s: %v", tt.expect, err)
			continue
		}
		if got := e.Match(r); got != tt.want {
			t.Errorf("%s on %+v: %v, want %v", tt.expect, r, got, tt.want)
		}
	}
	failed := Result{Error: "connection refused"}
	for s, want := range map[string]bool{"error": true, "status!=200": false, "json:.error": false} {
		e, _ := ParseExpect(s)
		if got := e.Match(failed); got != want {
			t.Errorf("%s on a failed request: %v, want %v", s, got, want)
		}
	}
}

func TestParseExpectErrors(t *testing.T) {
	for s, want := range map[string]string{
		"status=abc":   "a number from 100 to 599",
		"status>5xx":   "a status class takes = or !=",
		"latency=5ms":  "a latency takes >",
		"latency>fast": "a duration",
		"size>10":      `unknown field "size"`,
		"json:error=x": "starts with '.'",
		"json:.a[x]=1": "is not a number",
		"whatever":     "no condition",
	} {
		_, err := ParseExpect(s)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "write status=500") {
			t.Errorf("%q: %v, want an error with %q", s, err, want)
		}
	}
}

func TestMatchAll(t *testing.T) {
	a, _ := ParseExpect("status=500")
	b, _ := ParseExpect("latency>100ms")
	if !MatchAll([]Expect{a, b}, Result{Status: 500, Latency: time.Second}) {
		t.Error("both hold: no match")
	}
	if MatchAll([]Expect{a, b}, Result{Status: 500, Latency: time.Millisecond}) {
		t.Error("one fails: a match")
	}
	if MatchAll(nil, Result{Status: 500}) {
		t.Error("no condition: a match")
	}
}

// TestKeepBody: with KeepBody each result carries the answer's body, at
// most MaxBody bytes of it; without, none.
func TestKeepBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		io.WriteString(w, `{"error":"out of stock"}`)
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	exs := []*recording.Exchange{exchange(1, "GET", "/orders/7", "", 500, "")}
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Base: base, KeepBody: true}, `{"error":"out of stock"}`},
		{Options{Base: base, KeepBody: true, MaxBody: 5}, `{"err`},
		{Options{Base: base}, ""},
	} {
		var got []Result
		if _, err := Run(context.Background(), srv.Client(), exs, ref, tt.o, func(r Result) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || string(got[0].Body) != tt.want || got[0].Status != 500 {
			t.Errorf("KeepBody %v MaxBody %d: %+v, want body %q", tt.o.KeepBody, tt.o.MaxBody, got, tt.want)
		}
	}
}
