// Package httproute routes the HTTP requests of an intercepted port one by
// one: each request of an HTTP/1.1 keep-alive connection, and each stream
// of an HTTP/2 cleartext connection (gRPC included), goes to the laptop
// whose filter (package httpfilter) it matches, else to the app; a mirror
// route gets a copy of each request it matches while the app answers.
// Connections that are not cleartext HTTP go to the app unchanged, counted.
package httproute

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/tunnel"
)

// Route is where the requests its filter selects go: the laptop of one
// intercept.
type Route struct {
	// ID names the route in Stats (the intercept's owner and id).
	ID     string
	Filter httpfilter.Filter
	// Mirror: the app still answers; the route gets a copy of each request
	// it selects, and its answers are read and dropped.
	Mirror bool
	// Dial opens a connection to the laptop's process.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Config tunes a Router.
type Config struct {
	// App dials the app. Required.
	App func(ctx context.Context) (net.Conn, error)
	// Upstream, when set, wraps every connection the router opens, for
	// the caller at src ("mirror" for mirrored copies): to the app when to
	// is nil, else to route to (the agent records there); but see
	// MirrorRecorder.
	Upstream func(c net.Conn, src string, to *Route) net.Conn
	// Sniff bounds the wait for a caller's first bytes (default 1 s); a
	// caller silent that long is taken for a protocol where the server
	// speaks first, and joined to the app unfiltered.
	Sniff time.Duration
	// Probe, when set, is given each connection's sniffed first bytes;
	// true means it answered the connection (a readiness probe) and closed
	// it, and the router does nothing more with it.
	Probe func(c net.Conn, first []byte) bool
	// MirrorQueue bounds the copies waiting for their laptop (default
	// 4096); past it copies are dropped, counted. A copy that waited
	// longer than MirrorTimeout is dropped too: the laptop is not keeping up.
	MirrorQueue int
	// MirrorBodyCap bounds a mirrored request's body (default 1 MiB); a
	// request with a longer body is not mirrored, counted.
	MirrorBodyCap int
	// MirrorTimeout bounds one copy's delivery and answer (default 10 s).
	MirrorTimeout time.Duration
	// MirrorConns is how many kept-alive connections each mirror route
	// pipelines its HTTP/1 copies over (default 2).
	MirrorConns int
	// MirrorInFlight bounds the copies sent and not yet answered, per
	// connection for HTTP/1, per route for HTTP/2 (default 64).
	MirrorInFlight int
	// MirrorLinger is how long a mirror's sender waits, after a copy came,
	// for more to send in the same write (default 2 ms; negative: none).
	// Under load it turns one write, one wake-up of the tunnel and one of
	// the answers' reader per request into one per batch, CPU the app's
	// callers would otherwise wait behind; a copy is a few ms later at the
	// laptop, where nobody waits for it.
	MirrorLinger time.Duration
	// MirrorRecorder, when set, records what a mirror's HTTP/1
	// connections carry from the copies it wrote and the answers it read
	// (httprec.Made): each byte is parsed once, not again by a recorder
	// Upstream would put on the connection, so these connections do not
	// go through Upstream. It is asked at each connection a mirror opens;
	// nil records nothing on it.
	MirrorRecorder func(to *Route) MirrorRecorder
	// Shed, when set and true, drops every copy before it is made
	// (counted in Stats.MirrorShed): the agent runs close to its CPU
	// limit, and a throttled agent would stall the callers it carries.
	Shed   func() bool
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Sniff <= 0 {
		c.Sniff = time.Second
	}
	if c.MirrorQueue <= 0 {
		c.MirrorQueue = 4096
	}
	if c.MirrorBodyCap <= 0 {
		c.MirrorBodyCap = 1 << 20
	}
	if c.MirrorTimeout <= 0 {
		c.MirrorTimeout = 10 * time.Second
	}
	if c.MirrorConns <= 0 {
		c.MirrorConns = 2
	}
	if c.MirrorInFlight <= 0 {
		c.MirrorInFlight = 64
	}
	if c.MirrorLinger == 0 {
		c.MirrorLinger = 2 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Upstream == nil {
		c.Upstream = func(c net.Conn, _ string, _ *Route) net.Conn { return c }
	}
}

// Stats count what a Router did since it started.
type Stats struct {
	// Routed counts requests sent to each route (by ID); ToApp those the
	// app answered because no route matched.
	Routed map[string]uint64
	ToApp  uint64
	// NotHTTP counts connections that were not cleartext HTTP (joined to
	// the app unfiltered); TLS those of them that began a TLS handshake.
	NotHTTP, TLS uint64
	// Mirrored counts copies delivered to each mirror route (by ID);
	// MirrorDropped those dropped: queue full, body over the cap, the
	// agent near its CPU limit (also counted in MirrorShed), or the
	// laptop not answering in time.
	Mirrored      map[string]uint64
	MirrorDropped map[string]uint64
	MirrorShed    map[string]uint64
}

// Router routes the connections of one port. Its methods are safe for
// concurrent use.
type Router struct {
	cfg    Config
	routes atomic.Pointer[[]Route]
	srv    *http.Server
	ln     *connListener
	conns  sync.Map // net.Conn -> *connState

	buffers bufferPool
	h1pool  h1Pool

	mu      sync.Mutex
	stats   Stats
	mirrors map[string]*mirror
}

// New starts a Router with no routes: every request goes to the app.
func New(cfg Config) *Router {
	cfg.defaults()
	r := &Router{cfg: cfg, ln: newConnListener(), mirrors: map[string]*mirror{},
		stats: Stats{Routed: map[string]uint64{}, Mirrored: map[string]uint64{}, MirrorDropped: map[string]uint64{},
			MirrorShed: map[string]uint64{}}}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	r.srv = &http.Server{
		Handler:   http.HandlerFunc(r.serveHTTP),
		Protocols: &protos,
		ErrorLog:  slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		// Each caller connection gets its own connections upstream, so the
		// app (or the laptop) sees one connection per caller connection,
		// as without the router, and the recording knows the caller.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			st := &connState{router: r, src: c.RemoteAddr().String(), proxies: map[proxyKey]*upstream{}, h1conns: map[proxyKey]*h1Conn{}}
			r.conns.Store(c, st)
			return context.WithValue(ctx, connStateKey{}, st)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				if st, ok := r.conns.LoadAndDelete(c); ok {
					st.(*connState).close()
				}
			}
		},
	}
	go r.srv.Serve(r.ln)
	return r
}

// SetRoutes replaces the routes: the next request of every connection is
// routed by them. The first route whose filter matches gets a request;
// mirror routes get their copies whoever answers.
func (r *Router) SetRoutes(routes []Route) {
	rs := append([]Route(nil), routes...)
	r.routes.Store(&rs)
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[string]bool{}
	for _, rt := range rs {
		if !rt.Mirror {
			continue
		}
		live[rt.ID] = true
		if m := r.mirrors[rt.ID]; m == nil {
			r.mirrors[rt.ID] = newMirror(r, rt)
		}
	}
	for id, m := range r.mirrors {
		if !live[id] {
			m.stop()
			delete(r.mirrors, id)
		}
	}
}

// Stats returns a copy of the counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Routed, s.Mirrored, s.MirrorDropped, s.MirrorShed = clone(s.Routed), clone(s.Mirrored), clone(s.MirrorDropped), clone(s.MirrorShed)
	return s
}

func clone(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (r *Router) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

// Close stops the router: its connections and pending copies end.
func (r *Router) Close() error {
	r.SetRoutes(nil)
	return r.srv.Close()
}

// ServeConn routes one caller connection: cleartext HTTP/1.x and HTTP/2
// (with prior knowledge, as gRPC speaks it) request by request; anything
// else to the app unchanged. It returns once the connection is handed on;
// c is closed when it ends.
func (r *Router) ServeConn(ctx context.Context, c net.Conn) {
	prefix, kind := sniff(c, r.cfg.Sniff)
	if kind == kindOther && r.cfg.Probe != nil && r.cfg.Probe(c, prefix) {
		return
	}
	pc := &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(prefix), c)}
	if kind == kindHTTP {
		if !r.ln.hand(pc) {
			c.Close()
		}
		return
	}
	r.count(func(s *Stats) {
		s.NotHTTP++
		if kind == kindTLS {
			s.TLS++
		}
	})
	app, err := r.cfg.App(ctx)
	if err != nil {
		r.cfg.Logger.Warn("app not reachable", "err", err)
		c.Close()
		return
	}
	tunnel.Join(pc, r.cfg.Upstream(app, c.RemoteAddr().String(), nil))
}

// serveHTTP routes one request.
func (r *Router) serveHTTP(w http.ResponseWriter, req *http.Request) {
	st := req.Context().Value(connStateKey{}).(*connState)
	var to *Route
	var mirrors []Route
	if rs := r.routes.Load(); rs != nil {
		for i := range *rs {
			rt := &(*rs)[i]
			switch {
			case !rt.Filter.Match(req):
			case rt.Mirror:
				mirrors = append(mirrors, *rt)
			case to == nil:
				to = rt
			}
		}
	}
	var tee *teeBody
	if len(mirrors) > 0 {
		tee = newTeeBody(req.Body, r.cfg.MirrorBodyCap)
		req.Body = tee
	}
	if to != nil {
		r.count(func(s *Stats) { s.Routed[to.ID]++ })
	} else {
		r.count(func(s *Stats) { s.ToApp++ })
	}
	var sent *http.Request
	if req.ProtoMajor == 2 {
		st.proxy(to, true).ServeHTTP(w, req)
	} else {
		sent = st.serveH1(w, req, to)
	}
	if tee != nil {
		// The caller's answer first: net/http holds it in its buffer until
		// the handler returns, and the copy is no reason to wait.
		http.NewResponseController(w).Flush()
		for i, m := range mirrors {
			// The first copy takes the header of the request sent upstream,
			// already the caller's less its hop-by-hop fields; the others
			// clone their own (a copy's recorder redacts it in place).
			var h http.Header
			if i == 0 && sent != nil {
				h = sent.Header
			}
			r.mirror(m, req, h, tee)
		}
	}
}
