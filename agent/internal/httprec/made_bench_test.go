package httprec

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/tetherkube/tether/recording"
)

// answerConn is a connection whose reads give one canned answer per
// request written; writes go nowhere.
type answerConn struct {
	net.Conn
	answer []byte
	r      bytes.Reader
}

func (c *answerConn) Write(p []byte) (int, error) {
	c.r.Reset(c.answer)
	return len(p), nil
}
func (c *answerConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *answerConn) Close() error               { return nil }

// BenchmarkMirrorExchange is one mirrored copy as the mirror's sender and
// answer reader handle it (Request.Write, ReadResponse, the body read),
// recorded by Tap parsing the bytes again or by Made from what was parsed.
func BenchmarkMirrorExchange(b *testing.B) {
	body := "{\"id\": 7, \"item\": \"grinder\", \"qty\": 1}\n"
	answer := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Served-By: laptop\r\nDate: Mon, 23 Nov 2026 05:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	u, _ := url.Parse("http://orders/orders/7")
	meta := Meta{Pod: "orders-1", Port: 8080, Source: "mirror", Destination: recording.ToMirror}
	for _, made := range []bool{false, true} {
		name := "tap"
		if made {
			name = "made"
		}
		b.Run(name, func(b *testing.B) {
			ring := NewRing(64 << 20)
			var c net.Conn = &answerConn{answer: answer}
			var rec *Made
			if made {
				rec = ring.NewMade(meta, DefaultOptions())
			} else {
				c = Tap(c, ring.NewConn(meta, DefaultOptions()))
			}
			bw, br := bufio.NewWriter(c), bufio.NewReader(c)
			buf := make([]byte, 8<<10)
			b.ReportAllocs()
			for b.Loop() {
				req := &http.Request{Method: "GET", URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "orders",
					Header: http.Header{"User-Agent": {""}, "Accept-Encoding": {"gzip"}, "X-Tether-User": {"ana"}}}
				sent := time.Now()
				req.Write(bw)
				bw.Flush()
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					b.Fatal(err)
				}
				head := time.Now()
				if rec != nil {
					io.CopyBuffer(rec.AnswerBody(resp), resp.Body, buf)
					rec.Record(req, nil, sent, head, time.Now(), resp, nil)
				} else {
					io.Copy(io.Discard, resp.Body)
				}
				resp.Body.Close()
			}
			if st := ring.Stats(); st.Exchanges < uint64(b.N) {
				b.Fatalf("recorded %d exchanges of %d: %+v", st.Exchanges, b.N, st)
			}
		})
	}
}
