package httproute

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/tetherkube/tether/tunnel"
)

// h1Conn is a caller connection's HTTP/1.1 connection to one destination.
// The server runs an HTTP/1.x connection's handlers one at a time, so its
// requests use the upstream in turn, in the handler's own goroutine: no
// transport goroutines and channels between the two sides of a request.
type h1Conn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// h1Pool hands out the bufio buffers of h1Conns.
type h1Pool struct{ r, w sync.Pool }

func (p *h1Pool) reader(c net.Conn) *bufio.Reader {
	if br, ok := p.r.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, 16<<10)
}

func (p *h1Pool) writer(c net.Conn) *bufio.Writer {
	if bw, ok := p.w.Get().(*bufio.Writer); ok {
		bw.Reset(c)
		return bw
	}
	return bufio.NewWriterSize(c, 16<<10)
}

func (p *h1Pool) put(u *h1Conn) {
	u.br.Reset(nil)
	u.bw.Reset(nil)
	p.r.Put(u.br)
	p.w.Put(u.bw)
}

// h1 returns the connection to route to (the app when nil), dialing it
// when there is none.
func (s *connState) h1(ctx context.Context, to *Route) (*h1Conn, error) {
	k := proxyKey{}
	if to != nil {
		k.route = to.ID
	}
	s.mu.Lock()
	u := s.h1conns[k]
	s.mu.Unlock()
	if u != nil {
		return u, nil
	}
	dial := s.router.cfg.App
	if to != nil {
		dial = to.Dial
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	c = s.router.cfg.Upstream(c, s.src, to)
	u = &h1Conn{conn: c, br: s.router.h1pool.reader(c), bw: s.router.h1pool.writer(c)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.router.h1pool.put(u)
		c.Close()
		return nil, net.ErrClosed
	}
	s.h1conns[k] = u
	return u, nil
}

// drop closes route to's connection; the next request dials again.
func (s *connState) drop(to *Route, u *h1Conn) {
	k := proxyKey{}
	if to != nil {
		k.route = to.ID
	}
	s.mu.Lock()
	if s.h1conns[k] == u {
		delete(s.h1conns, k)
	}
	s.mu.Unlock()
	u.conn.Close()
	s.router.h1pool.put(u)
}

// serveH1 passes an HTTP/1.x request to route to (the app when nil) and
// its answer back, unchanged but for the hop-by-hop headers a proxy must
// not pass on; an upgrade joins the two connections once answered 101.
// It returns the request it sent upstream (nil when none), which nothing
// uses any more: a mirror's copy takes its header.
func (s *connState) serveH1(w http.ResponseWriter, req *http.Request, to *Route) (sent *http.Request) {
	u, err := s.h1(req.Context(), to)
	if err != nil {
		s.router.badGateway(w, req, to, err)
		return nil
	}
	out := outgoing(req)
	sent = out
	err = out.Write(u.bw)
	if err == nil {
		err = u.bw.Flush()
	}
	if err != nil {
		s.drop(to, u)
		s.router.badGateway(w, req, to, err)
		return sent
	}
	resp, err := http.ReadResponse(u.br, out)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode) // an informational answer (103 Early Hints), passed on
		clear(w.Header())
		resp, err = http.ReadResponse(u.br, out)
	}
	if err != nil {
		s.drop(to, u)
		s.router.badGateway(w, req, to, err)
		return sent
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		s.upgrade(w, req, to, u, resp)
		return sent
	}
	h := w.Header()
	copyHeader(h, resp.Header)
	removeHopByHop(h)
	h.Del("Te")
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", fmt.Sprint(resp.ContentLength))
	} else {
		h.Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	buf := s.router.buffers.Get()
	defer s.router.buffers.Put(buf)
	_, err = copyBody(w, resp.Body, buf, resp.ContentLength < 0)
	resp.Body.Close()
	for k, vs := range resp.Trailer {
		w.Header()[http.TrailerPrefix+k] = vs
	}
	if err != nil || resp.Close || out.Close {
		s.drop(to, u)
	}
	return sent
}

// copyBody copies an answer's body to the caller, flushing after every
// write when the answer has no length (a stream: server-sent events,
// long polls).
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, stream bool) (int64, error) {
	var n int64
	rc := http.NewResponseController(w)
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			if stream {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// upgrade answers the caller 101 and joins its connection to u's: from
// here the bytes are the new protocol's.
func (s *connState) upgrade(w http.ResponseWriter, req *http.Request, to *Route, u *h1Conn, resp *http.Response) {
	s.mu.Lock()
	for k, c := range s.h1conns {
		if c == u {
			delete(s.h1conns, k)
		}
	}
	s.mu.Unlock()
	caller, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		u.conn.Close()
		s.router.badGateway(w, req, to, fmt.Errorf("upgrade: %w", err))
		return
	}
	if err := resp.Write(brw); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		caller.Close()
		u.conn.Close()
		return
	}
	// Bytes either side already read past the heads belong to the new
	// protocol.
	go tunnel.Join(&prefixConn{Conn: caller, r: io.MultiReader(brw.Reader, caller)},
		&prefixConn{Conn: u.conn, r: io.MultiReader(u.br, u.conn)})
}

// outgoing is req as it goes upstream: the caller's target, headers and
// body, less the hop-by-hop headers (an upgrade keeps its Upgrade and
// Connection: upgrade).
func outgoing(req *http.Request) *http.Request {
	out := req.Clone(req.Context())
	out.Close = false
	upgrade := ""
	if httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") {
		upgrade = req.Header.Get("Upgrade")
	}
	removeHopByHop(out.Header)
	if upgrade != "" {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", upgrade)
	}
	// The caller's 100-continue was answered by this side's server as the
	// body was asked for; upstream gets the body at once.
	out.Header.Del("Expect")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // Request.Write adds Go's own otherwise
	}
	if req.Body == http.NoBody || req.ContentLength == 0 {
		out.Body = nil
	}
	return out
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append(dst[k][:0:0], vs...)
	}
}

// badGateway answers 502 saying which destination could not be reached.
func (r *Router) badGateway(w http.ResponseWriter, req *http.Request, to *Route, err error) {
	dest := "app"
	if to != nil {
		dest = to.ID
	}
	r.cfg.Logger.Warn("request not delivered", "to", dest, "path", req.URL.Path, "err", err)
	if req.Context().Err() != nil || errors.Is(err, http.ErrAbortHandler) {
		return // the caller left
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	if to == nil {
		fmt.Fprintf(w, "tether agent: the app is not reachable: %v\n", err)
	} else {
		fmt.Fprintf(w, "tether agent: the laptop of intercept %s is not reachable: %v\n", dest, err)
	}
}
