package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/agent/internal/httproute"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/tunnel"
)

// interception is one intercept of a port, bound to the tunnel that asked
// for it: it ends with that tunnel.
type interception struct {
	spec   agent.InterceptSpec
	filter httpfilter.Filter
	sess   *tunnel.Session
	since  time.Time
}

func (ic *interception) live() bool {
	select {
	case <-ic.sess.Done():
		return false
	default:
		return true
	}
}

// portState is a forwarded port's intercepts, and its router while some of
// them is filtered or a mirror.
type portState struct {
	list []*interception
	// router routes the port request by request; once made it stays (the
	// connections it holds go on, to the app when no route is left).
	router *httproute.Router
}

// mirrored reports whether a live intercept of the port is a mirror.
func (p *portState) mirrored() bool {
	return p.router != nil && slices.ContainsFunc(p.list, func(ic *interception) bool { return ic.spec.Mirror && ic.live() })
}

// routed reports whether the port's intercepts need per-request routing.
func (p *portState) routed() bool {
	for _, ic := range p.list {
		if ic.spec.Mirror || !ic.filter.IsZero() {
			return true
		}
	}
	return false
}

// intercept adds spec for sess, unless it overlaps an intercept of
// another tunnel (or another of sess's own): two intercepts that could
// both take a request are refused, naming the first one's owner. A mirror
// takes nothing from anyone and overlaps nothing. sess's own intercept
// with the same ID is replaced.
func (a *Agent) intercept(spec agent.InterceptSpec, sess *tunnel.Session) error {
	f, ok := a.forward(spec.ListenPort)
	if !ok {
		return fmt.Errorf("port %d: %w", spec.ListenPort, agent.ErrUnknownPort)
	}
	filter, err := httpfilter.Parse(spec.Filter)
	if err != nil {
		return fmt.Errorf("%v: %w", err, agent.ErrBadRouteFilter)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.aside && !(spec.Mirror && a.tap != nil) { // a tap's mirror copies from packets (passive.go)
		return fmt.Errorf("port %d: %w (a daemon took this agent out of the Service's path after its idle time; "+
			"intercepting points the Service at it again)", spec.ListenPort, agent.ErrAside)
	}
	p := a.portLocked(spec.ListenPort)
	var keep []*interception
	for _, ic := range p.list {
		if ic.sess == sess && ic.spec.ID == spec.ID {
			continue // replaced
		}
		if !spec.Mirror && !ic.spec.Mirror && filter.Overlaps(ic.filter) {
			return fmt.Errorf("port %d is intercepted by %s for %s since %s; %s overlaps it (choose a header value or path of your own): %w",
				spec.ListenPort, owner(ic.spec.Owner), ic.filter, ic.since.UTC().Format(time.RFC3339), filter, agent.ErrAlreadyIntercepted)
		}
		keep = append(keep, ic)
	}
	p.list = append(keep, &interception{spec: spec, filter: filter, sess: sess, since: time.Now()})
	a.reroute(f, p)
	return nil
}

func owner(s string) string {
	if s == "" {
		return "another tether"
	}
	return s
}

// leave ends sess's intercept id of port (every one of sess's there when
// id is "").
func (a *Agent) leave(port int, sess *tunnel.Session, id string) error {
	f, ok := a.forward(port)
	if !ok {
		return fmt.Errorf("port %d: %w", port, agent.ErrUnknownPort)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.portLocked(port)
	p.list = dropIf(p.list, func(ic *interception) bool { return ic.sess == sess && (id == "" || ic.spec.ID == id) })
	a.reroute(f, p)
	return nil
}

// releaseSession ends every intercept bound to sess.
func (a *Agent) releaseSession(sess *tunnel.Session) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for port, p := range a.ports {
		p.list = dropIf(p.list, func(ic *interception) bool { return ic.sess == sess })
		f, _ := a.forward(port)
		a.reroute(f, p)
	}
}

func dropIf(list []*interception, drop func(*interception) bool) []*interception {
	var keep []*interception
	for _, ic := range list {
		if !drop(ic) && ic.live() {
			keep = append(keep, ic)
		}
	}
	return keep
}

// portLocked returns port's state, a.mu held.
func (a *Agent) portLocked(port int) *portState {
	p := a.ports[port]
	if p == nil {
		p = &portState{}
		a.ports[port] = p
	}
	return p
}

// reroute gives p's router its routes, making it when first needed; a.mu
// held.
func (a *Agent) reroute(f agent.Forward, p *portState) {
	a.noteIntercepts()
	if p.router == nil {
		if !p.routed() {
			return
		}
		p.router = a.newRouter(f)
	}
	// Also a lone intercept of all traffic, whose new connections take the
	// plain path (route): the connections the router already holds send
	// their next requests to it too.
	var routes []httproute.Route
	for _, ic := range p.list {
		routes = append(routes, httproute.Route{ID: ic.spec.ID, Filter: ic.filter, Mirror: ic.spec.Mirror,
			Dial: func(ctx context.Context) (net.Conn, error) { return a.openConn(ctx, ic.sess) }})
	}
	p.router.SetRoutes(routes)
}

// newRouter makes the router of f, recording what it sends where when the
// agent records.
func (a *Agent) newRouter(f agent.Forward) *httproute.Router {
	app := net.JoinHostPort("127.0.0.1", strconv.Itoa(f.AppPort))
	cfg := httproute.Config{
		App: func(ctx context.Context) (net.Conn, error) {
			d := net.Dialer{Timeout: a.cfg.DialTimeout}
			return d.DialContext(ctx, "tcp", app)
		},
		Logger: a.log.With("port", f.ListenPort),
		Probe: func(c net.Conn, first []byte) bool {
			return a.nonces.Answer(c, first, a.cfg.PodName)
		},
	}
	if a.cpu != nil {
		cfg.Shed = a.cpu.Pressed
	}
	if a.ring != nil {
		cfg.Upstream = func(c net.Conn, src string, to *httproute.Route) net.Conn {
			if !a.recording() {
				return c
			}
			dest := recording.ToApp
			switch {
			case to != nil && to.Mirror:
				dest = recording.ToMirror
			case to != nil:
				dest = recording.ToLaptop
			}
			return httprec.Tap(c, a.ring.NewConn(httprec.Meta{Pod: a.cfg.PodName, Port: f.ListenPort, Source: src, Destination: dest}, a.recOpts))
		}
		// A mirror's HTTP/1 copies and the laptop's answers are recorded
		// as the mirror wrote and read them, not parsed again.
		cfg.MirrorRecorder = func(to *httproute.Route) httproute.MirrorRecorder {
			if !a.recording() {
				return nil
			}
			return a.ring.NewMade(httprec.Meta{Pod: a.cfg.PodName, Port: f.ListenPort, Source: "mirror", Destination: recording.ToMirror}, a.recOpts)
		}
	}
	return httproute.New(cfg)
}

// routeOf says where a new connection of port goes: the whole connection
// into sess (a lone intercept of all traffic), the router (filters or
// mirrors), or, when both are nil, the app.
func (a *Agent) routeOf(port int) (*tunnel.Session, *httproute.Router) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.ports[port]
	if p == nil {
		return nil, nil
	}
	if slices.ContainsFunc(p.list, func(ic *interception) bool { return !ic.live() }) {
		// A tunnel ended and its release has not run yet (checked without
		// allocating: this runs for every connection).
		f, _ := a.forward(port)
		p.list = dropIf(p.list, func(*interception) bool { return false })
		a.reroute(f, p)
	}
	switch {
	case len(p.list) == 0:
		return nil, nil
	case p.routed():
		return nil, p.router
	default:
		return p.list[0].sess, nil
	}
}

// forwardStatus reports f's intercepts and routing.
func (a *Agent) forwardStatus(f agent.Forward) agent.ForwardStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := agent.ForwardStatus{Forward: f}
	p := a.ports[f.ListenPort]
	if p == nil {
		return st
	}
	var stats httproute.Stats
	if p.router != nil {
		stats = p.router.Stats()
		st.ToApp, st.NotHTTP, st.TLS = stats.ToApp, stats.NotHTTP, stats.TLS
	}
	for _, ic := range p.list {
		if !ic.live() {
			continue
		}
		s := agent.InterceptStatus{InterceptSpec: ic.spec, Since: ic.since}
		if ic.spec.Mirror {
			s.Requests, s.Dropped, s.Shed = stats.Mirrored[ic.spec.ID], stats.MirrorDropped[ic.spec.ID], stats.MirrorShed[ic.spec.ID]
		} else {
			s.Requests = stats.Routed[ic.spec.ID]
			st.Intercepted = true
		}
		st.Intercepts = append(st.Intercepts, s)
	}
	return st
}

// closeRouters ends every router's connections, when the agent stops.
func (a *Agent) closeRouters() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.ports {
		if p.router != nil {
			p.router.Close()
		}
	}
}
