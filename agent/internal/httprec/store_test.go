package httprec

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/recording"
)

func TestStoredExchangeRoundTrip(t *testing.T) {
	full := &recording.Exchange{
		Time: time.Date(2026, 11, 30, 22, 40, 1, 123456789, time.UTC), Pod: "orders-7f9c", Port: 8080,
		Source: "10.42.0.17:51234", Destination: recording.ToMirror, Proto: "HTTP/1.1",
		Request: recording.Message{Method: "POST", Target: "/orders/7?x=1", Host: "orders",
			Header:  http.Header{"Content-Type": {"application/json"}, "X-Many": {"a", "", "c"}, "X-Empty": {}},
			Trailer: http.Header{}, Body: []byte(`{"id":7}`), BodySize: 300, Truncated: true,
			Redacted: []string{"Authorization", "password"}},
		Response: &recording.Message{Status: 502, Reason: "Bad Gateway", Header: http.Header{"Grpc-Status": {"14"}},
			Trailer: http.Header{"Grpc-Message": {"unavailable"}}, Body: []byte{}, BodySize: -1, Redacted: []string{}},
		Send: 3 * time.Microsecond, Wait: -time.Nanosecond, Receive: time.Hour, Error: "connection closed mid-body",
	}
	for name, e := range map[string]*recording.Exchange{
		"every field set":    full,
		"zero":               {},
		"request only, nils": {Pod: "p", Request: recording.Message{Method: "GET", Target: "/"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := stored{id: 42, data: encodeExchange(nil, e)}
			got, err := decodeExchange(s)
			if err != nil {
				t.Fatal(err)
			}
			want := *e
			want.ID = 42
			want.Time = time.Unix(0, e.Time.UnixNano()) // the local zone, as decoded
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			// nil and empty are told apart (a nil header is JSON null).
			if (e.Request.Header == nil) != (got.Request.Header == nil) || (e.Request.Body == nil) != (got.Request.Body == nil) ||
				(e.Response != nil && (e.Response.Body == nil) != (got.Response.Body == nil)) {
				t.Errorf("nil and empty confused: %#v", got)
			}
		})
	}
}

// TestStoredExchangeCoversEveryField fails when recording.Exchange or
// Message gains a field that encodeExchange does not know of: add it to
// the encoding and to the round trip's "every field set".
func TestStoredExchangeCoversEveryField(t *testing.T) {
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[recording.Exchange](): 13,
		reflect.TypeFor[recording.Message]():  11,
	} {
		if typ.NumField() != want {
			t.Errorf("%s has %d fields, the stored encoding knows %d", typ, typ.NumField(), want)
		}
	}
}

func TestStoredExchangeCorrupt(t *testing.T) {
	data := encodeExchange(nil, &recording.Exchange{Pod: "p", Request: recording.Message{Header: http.Header{"A": {"b"}}}})
	for _, bad := range [][]byte{data[:len(data)-1], append(data, 0), {0xff, 0xff}, nil} {
		if _, err := decodeExchange(stored{data: bad}); !errors.Is(err, errCorrupt) {
			t.Errorf("%x: err %v, want corrupt", bad, err)
		}
	}
}

// TestRingIsCheapToScan: what the garbage collector scans of a held
// exchange is its slot in the ring, not its headers and strings (as
// recording.Exchanges, 20,000 exchanges of 12 headers each way made 47 MiB
// of scannable heap).
func TestRingIsCheapToScan(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Content-Type", "User-Agent", "X-Request-Id", "X-B3-Traceid",
		"Traceparent", "Baggage", "Host", "X-Forwarded-For", "Via", "Cache-Control"} {
		h[k] = []string{"value of " + k}
	}
	const n = 20000
	ring := NewRing(1 << 30)
	before := scannableHeap()
	for i := range n {
		ring.add(&recording.Exchange{Pod: "p", Source: "10.0.0.1:1", Request: recording.Message{Method: "GET", Target: "/x", Header: h.Clone()},
			Response: &recording.Message{Status: 200, Header: h.Clone(), BodySize: int64(i)}}, 0)
	}
	// The ring's slots (32 bytes each, the slice grown by doubling) and
	// the test's noise; nothing per header.
	if grew := scannableHeap() - before; grew > 160*n {
		t.Errorf("%d exchanges added %d bytes of scannable heap (%d each)", n, grew, grew/n)
	}
	got, err := ring.Exchanges(func(e *recording.Exchange) bool { return e.Response.BodySize%1000 == 0 })
	if err != nil || len(got) != n/1000 || got[1].ID != 1001 || got[1].Response.Header.Get("Baggage") != "value of Baggage" {
		t.Fatalf("filtered read: %d exchanges, err %v", len(got), err)
	}
	runtime.KeepAlive(ring)
}

// scannableHeap is the heap the garbage collector scans, after a
// collection.
func scannableHeap() int {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestHeldLast: Last keeps the end of the held exchanges with the last n
// that match, decoding none without a filter, and all of them when fewer
// match.
func TestHeldLast(t *testing.T) {
	ring := NewRing(8 << 20)
	c := ring.NewConn(Meta{Pod: "p", Port: 8080}, DefaultOptions())
	for i := range 10 {
		c.FromClient(fmt.Appendf(nil, "GET /%c%d HTTP/1.1\r\nHost: x\r\n\r\n", "ab"[i%2], i))
		c.FromServer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	}
	c.Close()
	held := ring.Held()
	targets := func(h Held) []string {
		var out []string
		if err := h.Each(nil, func(e *recording.Exchange) error { out = append(out, e.Request.Target); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	isB := func(e *recording.Exchange) bool { return strings.HasPrefix(e.Request.Target, "/b") }
	for _, tt := range []struct {
		keep func(*recording.Exchange) bool
		n    int
		want string
	}{
		{nil, 3, "[/b7 /a8 /b9]"},
		{nil, 20, "[/a0 /b1 /a2 /b3 /a4 /b5 /a6 /b7 /a8 /b9]"},
		{isB, 2, "[/b7 /a8 /b9]"},
		{isB, 5, "[/b1 /a2 /b3 /a4 /b5 /a6 /b7 /a8 /b9]"},
		{isB, 6, "[/a0 /b1 /a2 /b3 /a4 /b5 /a6 /b7 /a8 /b9]"},
	} {
		last, err := held.Last(tt.keep, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(targets(last)); got != tt.want {
			t.Errorf("Last(filter %v, %d) = %s, want %s", tt.keep != nil, tt.n, got, tt.want)
		}
	}
}
