package httproute

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
)

// connState is one caller connection's upstreams: a transport per
// destination and protocol, each holding at most one idle connection.
type connState struct {
	router *Router
	src    string

	mu      sync.Mutex
	proxies map[proxyKey]*upstream // HTTP/2 cleartext
	h1conns map[proxyKey]*h1Conn   // HTTP/1.x
	closed  bool
}

// upstream is one destination's transport and the reverse proxy over it.
type upstream struct {
	tr    *http.Transport
	proxy http.Handler
}

type proxyKey struct {
	route string // "" for the app
	h2    bool
}

type connStateKey struct{}

// proxy returns the reverse proxy that sends this connection's requests to
// route to (the app when nil), over HTTP/2 cleartext when h2 (the caller
// spoke it: gRPC needs it end to end) or HTTP/1.1.
func (s *connState) proxy(to *Route, h2 bool) http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := proxyKey{h2: h2}
	if to != nil {
		k.route = to.ID
	}
	u := s.proxies[k]
	if u == nil || s.closed {
		tr := s.router.transport(to, s.src, h2)
		u = &upstream{tr: tr, proxy: s.router.reverseProxy(tr, to)}
		if !s.closed {
			s.proxies[k] = u
		}
	}
	return u.proxy
}

func (s *connState) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, u := range s.proxies {
		u.tr.CloseIdleConnections()
	}
	for k, u := range s.h1conns {
		u.conn.Close()
		s.router.h1pool.put(u)
		delete(s.h1conns, k)
	}
}

// transport dials route to (the app when nil) for the caller at src,
// through Config.Upstream.
func (r *Router) transport(to *Route, src string, h2 bool) *http.Transport {
	dial := r.cfg.App
	if to != nil {
		dial = to.Dial
	}
	var protos http.Protocols
	if h2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return r.cfg.Upstream(c, src, to), nil
		},
		Protocols:           &protos,
		DisableCompression:  true, // pass Accept-Encoding as the caller sent it, and nothing else
		MaxIdleConnsPerHost: 1,
		Proxy:               nil,
	}
}

// reverseProxy passes a request to tr unchanged but for what a proxy must
// change (hop-by-hop headers); the X-Forwarded headers stay as the caller
// sent them, as they would without the router.
func (r *Router) reverseProxy(tr *http.Transport, to *Route) http.Handler {
	return &httputil.ReverseProxy{
		Transport:  tr,
		BufferPool: &r.buffers,
		// FlushInterval 0: an answer of known length goes out in one
		// write at its end; a streamed one (no length: gRPC, server-sent
		// events, chunked) is flushed at every write, as ReverseProxy does
		// for them whatever this says.
		FlushInterval: 0,
		Rewrite: func(p *httputil.ProxyRequest) {
			p.Out.URL.Scheme = "http"
			p.Out.URL.Host = p.In.Host
			p.Out.Host = p.In.Host
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := p.In.Header[h]; ok {
					p.Out.Header[h] = v
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) { r.badGateway(w, req, to, err) },
	}
}

// connListener hands the router's HTTP connections to its http.Server.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives c to the server; false once the listener is closed.
func (l *connListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return routerAddr{} }

type routerAddr struct{}

func (routerAddr) Network() string { return "httproute" }
func (routerAddr) String() string  { return "httproute" }

// bufferPool lends the reverse proxies their 32 KiB copy buffers, which
// they would otherwise allocate per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
