package agent

import (
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
)

// DNSQuery is one query sent from the pod.
type DNSQuery struct {
	Server  string // host:port
	Name    string // fully qualified, ending in a dot
	Type    string // "A", "AAAA", ...
	Timeout time.Duration
}

// DNSRecord is one record of an answer.
type DNSRecord struct {
	Name string `json:"name"`
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
}

// DNSAnswer is what came back for a DNSQuery.
type DNSAnswer struct {
	// Rcode is NOERROR, NXDOMAIN, SERVFAIL, ...; empty when nothing came.
	Rcode   string
	Answers []DNSRecord
	Latency time.Duration
	// Error says why nothing came: "timeout", "unreachable", ...
	Error string
	// TCP reports a retry over TCP after a truncated UDP answer.
	TCP bool
}

// ProbeRequest asks for a TCP connection, and an HTTP request over it when
// HTTP is set.
type ProbeRequest struct {
	Address string
	Timeout time.Duration
	HTTP    *HTTPProbe
}

// HTTPProbe is the request a probe sends.
type HTTPProbe struct {
	Method, Path, Host string
}

// ProbeResult is what a probe saw. A failed connection is a result.
type ProbeResult struct {
	Connected    bool
	Connect      time.Duration
	Error        string
	LocalAddress string
	HTTPStatus   int
	HTTPLatency  time.Duration
	HTTPError    string
}

// ErrBadProbe: a probe or query request that cannot be sent as asked.
var ErrBadProbe = errdefs.New(errdefs.ErrUser, "BAD_PROBE", "bad probe request")
