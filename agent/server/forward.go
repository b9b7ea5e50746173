package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/tunnel"
)

// serveForward accepts the Service's connections on l and routes each.
func (a *Agent) serveForward(ctx context.Context, f agent.Forward, l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on port %d: %w", f.ListenPort, err)
		}
		go a.route(ctx, f, c)
	}
}

// route sends c through the intercepting tunnel when one intercept takes
// all of the port's traffic, to the router when filtered or mirror
// intercepts route it request by request, else to the app. A tunnel that
// fails to take the connection is not retried on the app: the caller sees
// the connection close, as it would with the laptop's process gone.
func (a *Agent) route(ctx context.Context, f agent.Forward, c net.Conn) {
	sess, router := a.routeOf(f.ListenPort)
	if router != nil {
		router.ServeConn(ctx, c) // answers readiness probes in its sniff
		return
	}
	// A readiness probe is answered on the copy's first read, while a
	// check runs; otherwise c is as accepted.
	c = a.nonces.Watch(c, a.cfg.PodName)
	if sess != nil {
		st, err := a.openConn(ctx, sess)
		if err == nil {
			a.join(c, st, f, recording.ToLaptop)
			return
		}
		if !errors.Is(err, tunnel.ErrClosed) {
			a.log.Warn("intercepted connection not delivered", "port", f.ListenPort, "from", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		// The tunnel ended between the lookup and the open: the app serves.
	}
	d := net.Dialer{Timeout: a.cfg.DialTimeout}
	app, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.AppPort)))
	if err != nil {
		a.log.Warn("app not reachable", "port", f.AppPort, "err", err)
		c.Close()
		return
	}
	a.join(c, app, f, recording.ToApp)
}

// join joins the caller to where its connection goes, recording the
// exchanges when recording is on.
func (a *Agent) join(c, upstream net.Conn, f agent.Forward, dest string) {
	if !a.recording() {
		// Two *net.TCPConn (not watched for a readiness probe): spliced.
		tunnel.Join(c, upstream)
		return
	}
	rc := a.ring.NewConn(httprec.Meta{Pod: a.cfg.PodName, Port: f.ListenPort, Source: c.RemoteAddr().String(), Destination: dest}, a.recOpts)
	// The recording taps hide the TCP connections from tunnel.Join, which
	// would read and write them raw (tunnel.RawIO): do it below the taps.
	httprec.Join(tunnel.RawIO(c), tunnel.RawIO(upstream), rc)
}
