package httproute

import (
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// teeBody keeps a copy of the request body as it is read, up to a cap.
type teeBody struct {
	mu     sync.Mutex // the transport reads the body in its own goroutine
	rc     io.ReadCloser
	buf    bytes.Buffer
	cap    int
	over   bool // the body was longer than cap
	ended  bool // read to its end
	closed bool
}

func newTeeBody(rc io.ReadCloser, cap int) *teeBody { return &teeBody{rc: rc, cap: cap} }

func (t *teeBody) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.rc.Read(p)
	if n > 0 && !t.over {
		if t.buf.Len()+n > t.cap {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		t.ended = true
	}
	return n, err
}

func (t *teeBody) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.rc.Close()
}

// copyable reports whether the whole body was seen and kept. A request
// with no body (http.NoBody) counts as read.
func (t *teeBody) copyable(req *http.Request) ([]byte, bool) {
	t.mu.Lock()
	over, ended, closed := t.over, t.ended, t.closed
	t.mu.Unlock()
	if !over && !ended && !closed && req.ContentLength != 0 {
		// The app answered before reading the body: read what is left,
		// within the cap, so the copy is whole.
		io.Copy(io.Discard, t)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over || !t.ended && req.ContentLength != 0 {
		return nil, false
	}
	return bytes.Clone(t.buf.Bytes()), true
}

// mirror queues a copy of req, whose body tee kept, for route rt; a full
// queue or a body it cannot copy drops it, counted. header, when not nil,
// is req's header as it went upstream (outgoing), the copy's to take;
// else the copy clones req's.
func (r *Router) mirror(rt Route, req *http.Request, header http.Header, tee *teeBody) {
	if r.shed(rt) {
		return
	}
	body, ok := tee.copyable(req)
	if !ok {
		r.count(func(s *Stats) { s.MirrorDropped[rt.ID]++ })
		return
	}
	r.queue(rt, req, header, body)
}

// MirrorCopy sends a copy of req, whose whole body is body, to each mirror
// route whose filter matches it: a request that reached the app without
// the router (the agent's tap read it from the pod's packets, once the
// app had answered). req is not kept.
func (r *Router) MirrorCopy(req *http.Request, body []byte) {
	rs := r.routes.Load()
	if rs == nil {
		return
	}
	for _, rt := range *rs {
		if rt.Mirror && rt.Filter.Match(req) && !r.shed(rt) {
			r.queue(rt, req, nil, body)
		}
	}
}

// MirrorMissed counts, as dropped for each mirror route whose filter
// matches it, a request that reached the app without the router and
// cannot be copied whole (the app did not answer it, or its body was
// longer than the recording's cap).
func (r *Router) MirrorMissed(req *http.Request) {
	if rs := r.routes.Load(); rs != nil {
		for _, rt := range *rs {
			if rt.Mirror && rt.Filter.Match(req) {
				r.count(func(s *Stats) { s.MirrorDropped[rt.ID]++ })
			}
		}
	}
}

// shed drops a copy for rt, counted, when the agent runs near its CPU
// limit.
func (r *Router) shed(rt Route) bool {
	if r.cfg.Shed == nil || !r.cfg.Shed() {
		return false
	}
	r.count(func(s *Stats) { s.MirrorDropped[rt.ID]++; s.MirrorShed[rt.ID]++ })
	return true
}

// queue queues a copy of req with body for route rt; see mirror.
func (r *Router) queue(rt Route, req *http.Request, header http.Header, body []byte) {
	r.mu.Lock()
	m := r.mirrors[rt.ID]
	r.mu.Unlock()
	drop := func() { r.count(func(s *Stats) { s.MirrorDropped[rt.ID]++ }) }
	if m == nil || req.Header.Get("Upgrade") != "" || len(body) > r.cfg.MirrorBodyCap {
		drop()
		return
	}
	if header == nil {
		header = req.Header.Clone()
		removeHopByHop(header)
		header.Del("Expect") // the copy carries its body at once, as outgoing's request does
		if _, ok := header["User-Agent"]; !ok {
			header["User-Agent"] = []string{""} // Request.Write adds Go's own otherwise
		}
	}
	out := &http.Request{
		Method:     req.Method,
		URL:        cloneURL(req),
		Proto:      req.Proto,
		ProtoMajor: req.ProtoMajor,
		ProtoMinor: req.ProtoMinor,
		Header:     header,
		Host:       req.Host,
		Trailer:    req.Trailer.Clone(),
	}
	out.ContentLength = int64(len(body))
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	select {
	case m.queue <- mirrorCopy{req: out, body: body, queued: time.Now()}:
	default:
		drop()
	}
}

func cloneURL(req *http.Request) *url.URL {
	u := *req.URL
	u.Scheme, u.Host = "http", req.Host
	return &u
}

// removeHopByHop drops the headers that belong to the caller's connection
// ("TE: trailers" stays: gRPC servers require it).
func removeHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	trailers := httpguts.HeaderValuesContainsToken(h.Values("Te"), "trailers")
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		h.Del(name)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
}
