package httprec

import (
	"net/http"
	"testing"

	"github.com/tetherkube/tether/recording"
)

// BenchmarkRingRead: a `requests list` of a full default ring of small
// JSON exchanges (64 MiB: ~130,000 of them).
func BenchmarkRingRead(b *testing.B) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"curl/8.5.0"}, "X-Request-Id": {"7f1c2a9e-1b2c-4d5e-8f90-123456789abc"}}
	rh := http.Header{"Content-Type": {"application/json"}, "Content-Length": {"96"}, "Date": {"Mon, 30 Nov 2026 22:40:01 GMT"}}
	ring := NewRing(64 << 20)
	for ring.Stats().Evicted == 0 {
		ring.add(&recording.Exchange{Pod: "orders-7f9c5d7b8-x2x9q", Port: 8080, Source: "10.42.0.17:51234", Destination: "app", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "GET", Target: "/orders/7", Host: "orders", Header: h},
			Response: &recording.Message{Status: 200, Reason: "OK", Header: rh, Body: make([]byte, 96), BodySize: 96}}, 0)
	}
	b.Logf("%d exchanges held", ring.Stats().Held)
	for b.Loop() {
		if _, err := ring.Exchanges(func(e *recording.Exchange) bool { return e.Status() == 500 }); err != nil {
			b.Fatal(err)
		}
	}
}
