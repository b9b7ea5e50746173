package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

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
	case daemon.ToLocal:
		if base == nil {
			port, err := d.interceptPort(req.Namespace, req.Workload)
			if err != nil {
				return replay.Summary{}, err
			}
			base = &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		}
		o.Base, o.KeepHost = base, true
	case daemon.ToURL:
		o.Base = base
	case daemon.ToClusterService, daemon.ToClusterAddress, daemon.ToClusterRecorded:
		dial, pod, done, err := d.podDialer(ctx, req.Namespace, req.Workload)
		if err != nil {
			return replay.Summary{}, err
		}
		defer done()
		transport.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
		switch kind {
		case daemon.ToClusterService:
			// The workload's own Service, whatever Host the caller sent:
			// a recorded Host (or a HAR's) never picks the destination.
			o.BaseFor, err = d.serviceBase(ctx, pod, req.Exchanges)
			if err != nil {
				return replay.Summary{}, err
			}
			o.KeepHost = true
		case daemon.ToClusterAddress:
			o.Base, o.KeepHost = base, true
		default:
			o.ToRecordedHost = true
		}
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
func (d *Daemon) podDialer(ctx context.Context, namespace, ref string) (func(context.Context, string) (net.Conn, error), corev1.Pod, func(), error) {
	if ref == "" {
		return nil, corev1.Pod{}, nil, errdefs.User("--to cluster needs the WORKLOAD whose pods send the requests")
	}
	_, targets, err := d.workloadAgents(ctx, namespace, ref)
	if err != nil {
		return nil, corev1.Pod{}, nil, err
	}
	link, err := d.agentLink(ctx, namespace, targets[0].pod.Name, targets[0].port, targets[0].token)
	if err != nil {
		return nil, corev1.Pod{}, nil, err
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return link.Dial(ctx, addr)
	}
	return dial, targets[0].pod, func() { link.Close() }, nil
}

// serviceBase returns, for each exchange, the address of the workload's
// Service port that leads to the agent port the exchange was recorded on.
func (d *Daemon) serviceBase(ctx context.Context, pod corev1.Pod, exs []*recording.Exchange) (func(*recording.Exchange) (*url.URL, error), error) {
	svcs, err := d.cs.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the Services of namespace %s: %w", pod.Namespace, err)
	}
	byPort := map[int]*url.URL{}
	for _, e := range exs {
		if _, done := byPort[e.Port]; done {
			continue
		}
		addr, err := serviceAddress(svcs.Items, pod, e.Port)
		if err != nil {
			return nil, err
		}
		byPort[e.Port] = &url.URL{Scheme: "http", Host: addr}
	}
	return func(e *recording.Exchange) (*url.URL, error) {
		if u, ok := byPort[e.Port]; ok {
			return u, nil
		}
		return nil, fmt.Errorf("no Service of the workload leads to port %d", e.Port)
	}, nil
}

// serviceAddress is ClusterIP:port of the first Service (by name) that
// selects pod and has a port whose target is port on it.
func serviceAddress(svcs []corev1.Service, pod corev1.Pod, port int) (string, error) {
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP || targetPort(pod, sp) != port {
				continue
			}
			host := s.Spec.ClusterIP
			if host == "" || host == corev1.ClusterIPNone {
				host = s.Name + "." + s.Namespace + ".svc"
			}
			return net.JoinHostPort(host, strconv.Itoa(int(sp.Port))), nil
		}
	}
	return "", errdefs.User("no Service in namespace %s selects pod %s on port %d, where the request was recorded: "+
		"name a destination with --to cluster:HOST:PORT, or --to cluster:recorded for the host each caller addressed", pod.Namespace, pod.Name, port)
}

// targetPort is the pod port a Service port leads to (0 if none).
func targetPort(pod corev1.Pod, sp corev1.ServicePort) int {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal {
					return int(cp.ContainerPort)
				}
			}
		}
		return 0
	case sp.TargetPort.IntVal != 0:
		return int(sp.TargetPort.IntVal)
	}
	return int(sp.Port)
}
