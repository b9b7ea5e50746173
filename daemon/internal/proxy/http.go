package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/tetherkube/tether/tunnel"
)

// ServeHTTP serves an HTTP proxy on l until l is closed or ctx ends:
// CONNECT (for https and anything else over TCP) and plain-HTTP requests
// in absolute form, which are sent on through connections Dial opens (kept
// alive between requests). Clients authenticate with Proxy-Authorization:
// Basic.
func ServeHTTP(ctx context.Context, l net.Listener, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	h := &httpProxy{cfg: cfg}
	h.transport = &http.Transport{
		DialContext:           func(ctx context.Context, _, addr string) (net.Conn, error) { return cfg.Dial(ctx, addr) },
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		// The request is sent as the client wrote it; the server's
		// response, compressed or not, goes back as is.
		DisableCompression: true,
	}
	h.forward = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport:     h.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			cfg.logger().Info("http proxy request failed", "to", r.URL.Host, "err", err)
			http.Error(w, "tether: "+err.Error(), http.StatusBadGateway)
		},
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: handshakeTimeout, BaseContext: func(net.Listener) context.Context { return ctx }}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	defer h.transport.CloseIdleConnections()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

type httpProxy struct {
	cfg       Config
	transport *http.Transport
	forward   *httputil.ReverseProxy
}

func (h *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="tether run"`)
		http.Error(w, "tether: proxy authentication required (the credentials are in HTTP_PROXY)", http.StatusProxyAuthRequired)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		h.connect(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http":
		h.forward.ServeHTTP(w, r)
	default:
		http.Error(w, "tether: this is a proxy: send CONNECT, or a request for an absolute http:// URL", http.StatusBadRequest)
	}
}

func (h *httpProxy) authorized(r *http.Request) bool {
	v := r.Header.Get("Proxy-Authorization")
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	return ok && h.cfg.authorized(user, pass)
}

// connect dials r.Host and, once connected, answers 200 and joins the
// client's connection to it.
func (h *httpProxy) connect(w http.ResponseWriter, r *http.Request) {
	addr := r.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		http.Error(w, fmt.Sprintf("tether: CONNECT %q: want host:port", addr), http.StatusBadRequest)
		return
	}
	remote, err := h.cfg.Dial(r.Context(), addr)
	if err != nil {
		h.cfg.logger().Info("http proxy connect failed", "to", addr, "err", err)
		code := http.StatusBadGateway
		if classify(err) == failTTL {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, "tether: "+err.Error(), code)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		remote.Close()
		http.Error(w, "tether: "+err.Error(), http.StatusInternalServerError)
		return
	}
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		c.Close()
		remote.Close()
		return
	}
	tunnel.Join(withBuffered(c, brw.Reader), remote)
}
