package server

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// Replay sends the exchanges again and calls emit with each result.
func (d *Daemon) Replay(ctx context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
	kind, base, err := daemon.ParseTo(req.To)
	if err != nil {
		return replay.Summary{}, err
	}
	if len(req.Exchanges) == 0 {
		return replay.Summary{}, errdefs.User("nothing to replay: no recorded exchange matches")
	}
	o := req.Options
	transport := &http.Transport{MaxIdleConnsPerHost: max(o.Concurrency, 1) * 2, DisableCompression: true}
	switch kind {
	case "local":
		if base == nil {
			port, err := d.interceptPort(req.Namespace, req.Workload)
			if err != nil {
				return replay.Summary{}, err
			}
			base = &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		}
		o.Base, o.KeepHost = base, true
	case "url":
		o.Base = base
	case "cluster":
		dial, done, err := d.podDialer(ctx, req.Namespace, req.Workload)
		if err != nil {
			return replay.Summary{}, err
		}
		defer done()
		transport.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
		o.ToRecordedHost = true
	}
	if err := o.Validate(); err != nil {
		return replay.Summary{}, errdefs.Mark(errdefs.ErrUser, err)
	}
	defer transport.CloseIdleConnections()
	refs := map[*recording.Exchange]string{}
	for i, e := range req.Exchanges {
		if i < len(req.Refs) {
			refs[e] = req.Refs[i]
		}
	}
	ref := func(e *recording.Exchange) string {
		if r, ok := refs[e]; ok {
			return r
		}
		return strconv.FormatUint(e.ID, 10)
	}
	d.log.Info("replay", "to", req.To, "requests", len(req.Exchanges), "count", o.Count)
	client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return replay.Run(ctx, client, req.Exchanges, ref, o, emit)
}

// interceptPort is the local port of the workload's running intercept.
func (d *Daemon) interceptPort(namespace, ref string) (int, error) {
	if ref == "" {
		return 0, errdefs.User("--to local needs the intercepted WORKLOAD, or write --to local:PORT")
	}
	kind, name, err := workload.ParseRef(ref)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ic := range d.intercepts {
		w := ic.Workload
		if w.Namespace == namespace && w.Name == name && (kind == "" || kind == w.Kind) {
			return ic.LocalPort, nil
		}
	}
	return 0, errdefs.User("%s in namespace %s is not intercepted by this daemon: start `tether intercept %s --port ...`, or write --to local:PORT",
		ref, namespace, ref)
}

// podDialer returns a dial function that connects from inside a ready pod
// of the workload, through its agent.
func (d *Daemon) podDialer(ctx context.Context, namespace, ref string) (func(context.Context, string) (net.Conn, error), func(), error) {
	if ref == "" {
		return nil, nil, errdefs.User("--to cluster needs the WORKLOAD whose pods send the requests")
	}
	_, pods, token, err := d.workloadAgents(ctx, namespace, ref)
	if err != nil {
		return nil, nil, err
	}
	link, err := d.agentLink(ctx, namespace, pods[0].Name, agent.DefaultTunnelPort, token)
	if err != nil {
		return nil, nil, err
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return link.Dial(ctx, addr)
	}
	return dial, func() { link.Close() }, nil
}
