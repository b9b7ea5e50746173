package server

import (
	"bytes"
	"net/http"
	"net/url"

	"github.com/tetherkube/tether/agent/internal/httproute"
	"github.com/tetherkube/tether/recording"
)

// An agent that records from a copy of the pod's packets (Record.Passive)
// steps aside: the Service sends callers straight to the app. A mirror
// intercept then takes its copies from the same packets: each exchange
// the tap records, once the app has answered it whole, goes to the port's
// mirror routes (httproute.Router.MirrorCopy). Callers never wait for the
// agent. Requests the agent carries itself (the Service pointed at it for
// another intercept) are copied by the router as they pass; the tap does
// not read the loopback the agent reaches the app by, and the callers'
// packets to the agent's own port do not pass its filter, so no request
// is copied twice.

// mirrorFromPackets is the tap's Observe: it copies ex to the mirror
// routes of its port, if any.
func (a *Agent) mirrorFromPackets(ex *recording.Exchange) {
	a.mu.Lock()
	var r *httproute.Router
	if p := a.ports[ex.Port]; p != nil && p.mirrored() {
		r = p.router
	}
	a.mu.Unlock()
	if r == nil {
		return
	}
	switch req, body, whole := passiveCopy(ex); {
	case req == nil:
	case whole:
		r.MirrorCopy(req, body)
	default:
		r.MirrorMissed(req)
	}
}

// passiveCopy is the request of ex as a mirror copies it, nil when its
// target does not parse; whole says it can be copied: the app answered
// it, and the recording kept the request's whole body. It keeps nothing
// of ex (the recording redacts ex once its observers return).
func passiveCopy(ex *recording.Exchange) (req *http.Request, body []byte, whole bool) {
	m := &ex.Request
	u, err := url.ParseRequestURI(m.Target)
	if err != nil {
		return nil, nil, false
	}
	req = &http.Request{Method: m.Method, URL: u, Host: m.Host, Header: m.Header.Clone(), Trailer: m.Trailer.Clone()}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	switch ex.Proto {
	case "HTTP/2.0":
		req.Proto, req.ProtoMajor, req.ProtoMinor = ex.Proto, 2, 0
	case "HTTP/1.0":
		req.Proto, req.ProtoMajor, req.ProtoMinor = ex.Proto, 1, 0
	default:
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	}
	if ex.Error != "" || ex.Response == nil || m.Truncated || int64(len(m.Body)) != m.BodySize {
		return req, nil, false
	}
	return req, bytes.Clone(m.Body), true
}
