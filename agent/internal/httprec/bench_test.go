package httprec

import (
	"fmt"
	"testing"
)

// BenchmarkExchange parses one keep-alive request and its answer, as the
// agent does per request, and stores the exchange.
func BenchmarkExchange(b *testing.B) {
	req := []byte("GET /orders/7 HTTP/1.1\r\nHost: orders\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")
	body := "{\"id\": 7, \"item\": \"grinder\", \"qty\": 1}\n"
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Served-By: orders-1\r\nDate: Mon, 23 Nov 2026 05:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	ring := NewRing(64 << 20)
	c := ring.NewConn(Meta{Pod: "orders-1", Port: 8080, Source: "10.0.0.1:1234", Destination: "app"}, DefaultOptions())
	b.ReportAllocs()
	for b.Loop() {
		c.BeforeClientWrite()
		c.AfterClientWrite(req)
		c.FromServer(resp)
	}
	if st := ring.Stats(); st.Exchanges < uint64(b.N) {
		b.Fatalf("recorded %d exchanges of %d: %+v", st.Exchanges, b.N, st)
	}
}
