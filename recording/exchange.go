// Package recording is the record of HTTP exchanges that the agent keeps
// and that the daemon and CLI list, show, export and replay: the Exchange
// type, redaction, filters and the export formats (HAR 1.2, curl). The
// agent's parser (agent/internal/httprec) produces Exchanges; everything
// else here is shared by both sides of the tunnel.
package recording

import (
	"net/http"
	"time"
)

// Where an exchange went.
const (
	ToApp    = "app"    // the workload's own container
	ToLaptop = "laptop" // through an intercept's tunnel
	ToMirror = "mirror" // a copy for a mirror intercept's laptop, whose answer is dropped
)

// Exchange is one request and its response, as they crossed the agent.
type Exchange struct {
	ID uint64 `json:"id"`
	// Time is when the request's first byte arrived.
	Time time.Time `json:"time"`
	Pod  string    `json:"pod"`
	Port int       `json:"port"`
	// Source is the caller's address, host:port.
	Source string `json:"source"`
	// Destination is ToApp, ToLaptop or ToMirror.
	Destination string `json:"destination"`
	// Proto is "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0".
	Proto    string   `json:"proto"`
	Request  Message  `json:"request"`
	Response *Message `json:"response,omitempty"`
	// Timings: Send is the request's transfer, Wait from the request's end
	// to the response's first byte, Receive the response's transfer.
	Send    time.Duration `json:"sendNanos"`
	Wait    time.Duration `json:"waitNanos"`
	Receive time.Duration `json:"receiveNanos"`
	// Error says why the exchange is incomplete (no response, connection
	// closed mid-body).
	Error string `json:"error,omitempty"`
}

// Latency is the whole exchange, from the request's first byte to the
// response's last.
func (e *Exchange) Latency() time.Duration { return e.Send + e.Wait + e.Receive }

// Status is the response's status code, 0 without a response.
func (e *Exchange) Status() int {
	if e.Response == nil {
		return 0
	}
	return e.Response.Status
}

// GRPCStatus is the answer's grpc-status, "" when it has none.
func (e *Exchange) GRPCStatus() string {
	if e.Response == nil {
		return ""
	}
	return e.Response.GRPCStatus()
}

// GRPCStatus is a response's grpc-status (from its trailers, or its
// headers for a trailers-only answer), "" when it has none.
func (m *Message) GRPCStatus() string {
	if s := m.Trailer.Get("Grpc-Status"); s != "" {
		return s
	}
	return m.Header.Get("Grpc-Status")
}

// Message is a request or a response.
type Message struct {
	// Requests: Method, Target (the request target as sent, e.g.
	// "/orders/7?x=1") and Host.
	Method string `json:"method,omitempty"`
	Target string `json:"target,omitempty"`
	Host   string `json:"host,omitempty"`
	// Responses: Status and Reason.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`

	Header  http.Header `json:"header"`
	Trailer http.Header `json:"trailer,omitempty"`
	// Body holds at most the per-body cap; BodySize counts every byte (after
	// chunked decoding), and Truncated says the body is longer than Body.
	Body      []byte `json:"body,omitempty"`
	BodySize  int64  `json:"bodySize"`
	Truncated bool   `json:"truncated,omitempty"`
	// Redacted names what was redacted: header names and JSON field paths.
	Redacted []string `json:"redacted,omitempty"`
}

// Size is what the exchange costs in a recording buffer, roughly: bodies,
// headers and a fixed overhead.
func (e *Exchange) Size() int {
	n := 512 + len(e.Source) + len(e.Pod) + e.Request.size()
	if e.Response != nil {
		n += e.Response.size()
	}
	return n
}

func (m *Message) size() int {
	n := len(m.Body) + len(m.Method) + len(m.Target) + len(m.Host) + len(m.Reason)
	for _, h := range []http.Header{m.Header, m.Trailer} {
		for k, vs := range h {
			n += len(k) + 16
			for _, v := range vs {
				n += len(v) + 16
			}
		}
	}
	return n
}
