package replay

import (
	"net/http"
	"strings"

	"github.com/tetherkube/tether/recording"
)

// http2Client returns a client that speaks HTTP/2 as it was recorded: h2c
// with prior knowledge to http:// URLs, HTTP/2 over TLS to https:// ones.
// It clones c's *http.Transport, so requests go through the same dial
// function (the daemon's seam for --to cluster); a client with any other
// RoundTripper is used as it is (its RoundTripper decides the protocol).
func http2Client(c *http.Client) *http.Client {
	var t *http.Transport
	switch rt := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = rt.Clone()
	default:
		return c
	}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	t.Protocols = p
	h2 := *c
	h2.Transport = t
	return &h2
}

// speaksHTTP2 reports whether e is replayed as HTTP/2: gRPC, which needs
// it, and what tether's agent recorded as HTTP/2 (h2c). A browser's HAR
// also says HTTP/2 (of a TLS site); replayed to an http:// URL it goes out
// as HTTP/1.1, as most development servers expect, and to https:// as the
// TLS handshake agrees.
func speaksHTTP2(e *recording.Exchange) bool {
	recordedByAgent := e.Pod != "" || e.Destination != ""
	return isGRPC(e.Request.Header) || (recordedByAgent && strings.EqualFold(strings.TrimSuffix(e.Proto, ".0"), "HTTP/2"))
}
