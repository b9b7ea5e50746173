package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/clusternet"
	"github.com/tetherkube/tether/daemon/internal/gateway"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/podenv"
	"github.com/tetherkube/tether/daemon/internal/proxy"
	"github.com/tetherkube/tether/daemon/internal/trace"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/resolvconf"
)

// Run lends a pod's network to a local process until ctx ends: every
// check comes before anything is added to the pod, then the link (the
// intercept's, else an inspection agent's), the pod's resolver and the
// cluster's ranges, the run's entry on the dial socket and, in proxy mode,
// the proxies. It returns nil when ctx ends, an error when the link dies.
func (d *Daemon) Run(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error {
	if strings.TrimSpace(req.Target) == "" && req.Container != "" {
		return errdefs.User("-c %s names a container of the target; name the target too (WORKLOAD or pod/NAME)", req.Container)
	}
	path, err := agent.ParsePath(req.Path)
	if err != nil {
		return err
	}
	services, err := d.checkServices(ctx, req.Namespace, req.Services)
	if err != nil {
		return err
	}
	req.Services = services
	if strings.TrimSpace(req.Target) == "" {
		return d.runThroughGateway(ctx, req, path, progress, ready)
	}
	pod, picked, err := trace.PickPod(ctx, d.cs, req.Namespace, req.Target, trace.PickOptions{Purpose: "run as"})
	if err != nil {
		return err
	}
	container, err := podenv.PickContainer(pod, req.Container)
	if err != nil {
		return err
	}
	link, via := d.interceptLink(req.Namespace, pod.Name)
	if link == nil {
		if err := d.runPermitted(ctx, req.Namespace); err != nil {
			return err
		}
	}
	// Read before anything is added to the pod: a failure here changes
	// nothing (the dry run creates nothing).
	ranges, err := d.clusterRanges(ctx, req.Namespace)
	if err != nil {
		return err
	}
	if link == nil {
		// Dialing needs the pod's network only: any run agent of the pod
		// serves (no container asked), whichever container and user it
		// was added for (tether env adds them per container and user).
		if link, err = d.inspectAgent(ctx, inspect.Request{Namespace: req.Namespace, Pod: pod.Name,
			AgentImage: req.AgentImage, Job: agent.JobRun}, progress); err != nil {
			return err
		}
		defer link.Close()
		via = "an inspection agent (ephemeral container) of pod " + pod.Name
		if err := d.usePath(ctx, link, pod.Status.PodIP, path); err != nil {
			return err
		}
	} else if path == agent.PathDirect && link.Path() != agent.PathDirect {
		// The intercept's link, on the port-forward: offer it the direct
		// path as asked (the intercept's connections take it too).
		if err := d.usePath(ctx, link, pod.Status.PodIP, path); err != nil {
			return err
		}
	}
	return d.holdRun(ctx, req, runTarget{pod: pod.Name, container: container, picked: picked, via: via, link: link, ranges: ranges}, ready)
}

// runThroughGateway runs where no workload is named: from the namespace's
// gateway Deployment (journaled; `tether rollback` removes it).
func (d *Daemon) runThroughGateway(ctx context.Context, req daemon.RunRequest, path agent.Path, progress func(string), ready func(daemon.RunInfo)) error {
	if err := d.permitted(ctx, access.Gateway, req.Namespace, accessObjects(gateway.Workload(req.Namespace)),
		"run with no workload named (the gateway)", runRole); err != nil {
		return err
	}
	ranges, err := d.clusterRanges(ctx, req.Namespace)
	if err != nil {
		return err
	}
	gw, err := gateway.Ensure(ctx, d.cs, gateway.Request{Namespace: req.Namespace, AgentImage: req.AgentImage}, progress)
	if err != nil {
		return err
	}
	link, err := d.agentLink(ctx, req.Namespace, gw.Pod, gw.Port, gw.Token)
	if err != nil {
		return err
	}
	defer link.Close()
	if path != agent.PathPortForward {
		p, err := d.cs.CoreV1().Pods(req.Namespace).Get(ctx, gw.Pod, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the gateway's pod %s: %w", gw.Pod, err)
		}
		if err := d.usePath(ctx, link, p.Status.PodIP, path); err != nil {
			return err
		}
	}
	via := fmt.Sprintf("the gateway deployment/%s of namespace %s (`tether rollback deployment/%s -n %s` removes it)",
		gateway.Name, req.Namespace, gateway.Name, req.Namespace)
	return d.holdRun(ctx, req, runTarget{pod: gw.Pod, container: inject.AgentContainer, via: via, link: link, ranges: ranges}, ready)
}

// runTarget is the pod a run's connections leave from, and the link to
// its agent.
type runTarget struct {
	pod, container, picked, via string
	link                        *agent.Link
	ranges                      clusternet.Ranges
}

// holdRun reads what the process needs to know, opens the run's entry on
// the dial socket and its proxies, calls ready, and holds the run until
// ctx ends or the link dies.
func (d *Daemon) holdRun(ctx context.Context, req daemon.RunRequest, t runTarget, ready func(daemon.RunInfo)) error {
	pod, container, picked, via, link, ranges := t.pod, t.container, t.picked, t.via, t.link, t.ranges
	raw, err := link.Agent().ResolvConf(ctx)
	if err != nil {
		return fmt.Errorf("read the resolv.conf of pod %s: %w", pod, err)
	}
	rc, err := resolvconf.Parse(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("the resolv.conf of pod %s: %w", pod, err)
	}
	r := &activeRun{id: randomHex(16), pod: pod, link: link, conns: map[*runConn]struct{}{}}
	d.addRun(r)
	defer d.removeRun(r)
	info := daemon.RunInfo{ID: r.id, Namespace: req.Namespace, Pod: pod, Container: container, PickedFrom: picked, Via: via,
		ResolvConf: rc, ResolvConfRaw: raw, ServiceCIDRs: ranges.Services, ServiceCIDRsSource: ranges.ServicesSource,
		PodCIDRs: ranges.Pods, PodCIDRsSource: ranges.PodsSource, DialSocket: d.dialSocket, Services: req.Services,
		Path: string(link.Path())}
	if req.Proxy {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		cfg := proxy.Config{Dial: r.Dial, Username: "tether", Password: randomHex(16), Logger: d.log}
		socks, err := listenLoopback()
		if err != nil {
			return err
		}
		defer socks.Close()
		httpl, err := listenLoopback()
		if err != nil {
			return err
		}
		defer httpl.Close()
		go proxy.ServeSOCKS5(pctx, socks, cfg)
		go proxy.ServeHTTP(pctx, httpl, cfg)
		info.SOCKSAddr, info.HTTPAddr = socks.Addr().String(), httpl.Addr().String()
		info.ProxyUsername, info.ProxyPassword = cfg.Username, cfg.Password
	}
	d.log.Info("run ready", "pod", req.Namespace+"/"+pod, "via", via, "proxy", req.Proxy, "path", info.Path)
	ready(info)
	select {
	case <-ctx.Done():
		d.log.Info("run ended", "pod", req.Namespace+"/"+pod)
		return nil
	case <-link.Done():
		return errdefs.Unavailable("the link to the agent of pod %s ended (the pod was deleted or restarted, the intercept was left, "+
			"or the API server's port-forward broke; `tether logs` has details)", pod)
	}
}

// checkServices checks that each NAME:PORT names a Service with that port
// (by number or name), and returns them with each port as a number.
func (d *Daemon) checkServices(ctx context.Context, namespace string, services []string) ([]string, error) {
	var out []string
	for _, s := range services {
		name, port, ok := strings.Cut(s, ":")
		if !ok {
			return nil, errdefs.User("--forward svc/%s: want svc/NAME:PORT", s)
		}
		svc, err := d.cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, errdefs.User("--forward: no Service %q in namespace %s (`kubectl get svc -n %s` lists them)", name, namespace, namespace)
		}
		if err != nil {
			return nil, fmt.Errorf("read Service %s: %w", name, err)
		}
		var have []string
		number := ""
		for _, p := range svc.Spec.Ports {
			n := strconv.Itoa(int(p.Port))
			have = append(have, n+"/"+p.Name)
			if n == port || (p.Name != "" && p.Name == port) {
				number = n
			}
		}
		if number == "" {
			return nil, errdefs.User("--forward svc/%s: Service %s has no port %s; ports: %s", s, name, port, strings.Join(have, ", "))
		}
		out = append(out, name+":"+number)
	}
	return out, nil
}

// interceptLink returns the link of an intercept of this daemon to pod's
// sidecar agent, if any.
func (d *Daemon) interceptLink(namespace, pod string) (*agent.Link, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ic := range d.intercepts {
		if ic.Workload.Namespace != namespace {
			continue
		}
		if l := ic.Link(pod); l != nil {
			return l, fmt.Sprintf("the sidecar agent of pod %s (the intercept of %s)", pod, ic.Workload)
		}
	}
	return nil, ""
}

func listenLoopback() (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback for the run's proxy: %w", err)
	}
	return l, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// activeRun is a run the dial socket serves.
type activeRun struct {
	id, pod string
	link    *agent.Link

	mu     sync.Mutex
	conns  map[*runConn]struct{}
	closed bool
}

// Dial connects to addr from the run's pod; the connection is closed when
// the run ends.
func (r *activeRun) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := r.link.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	rc := &runConn{Conn: c, run: r}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return nil, fmt.Errorf("dial %s: the run ended", addr)
	}
	r.conns[rc] = struct{}{}
	return rc, nil
}

func (r *activeRun) close() {
	r.mu.Lock()
	r.closed = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// runConn is a connection of a run, forgotten by the run once closed.
type runConn struct {
	net.Conn
	run *activeRun
}

func (c *runConn) Close() error {
	c.run.mu.Lock()
	delete(c.run.conns, c)
	c.run.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite passes a half-close on to the stream.
func (c *runConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (d *Daemon) addRun(r *activeRun) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runs == nil {
		d.runs = map[string]*activeRun{}
	}
	d.runs[r.id] = r
}

func (d *Daemon) removeRun(r *activeRun) {
	d.mu.Lock()
	delete(d.runs, r.id)
	d.mu.Unlock()
	r.close()
}

// dialRun serves the dial socket: it finds the run by id.
func (d *Daemon) dialRun(ctx context.Context, id, addr string) (net.Conn, error) {
	d.mu.Lock()
	r := d.runs[id]
	d.mu.Unlock()
	if r == nil {
		return nil, daemon.ErrRunUnknown
	}
	return r.Dial(ctx, addr)
}

// serveDialSocket accepts on the dial socket until it is closed.
func (d *Daemon) serveDialSocket(ctx context.Context, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			if err := daemon.ServeDialConn(ctx, c, d.dialRun); err != nil {
				d.log.Debug("run dial", "err", err)
			}
		}()
	}
}

// rangesTTL is how long the cluster's ranges found for a namespace are
// reused: they change when an admin changes the cluster, not per run.
const rangesTTL = 5 * time.Minute

type cachedRanges struct {
	ranges clusternet.Ranges
	at     time.Time
}

// clusterRanges returns the cluster's ranges as seen from namespace,
// found at most rangesTTL ago.
func (d *Daemon) clusterRanges(ctx context.Context, namespace string) (clusternet.Ranges, error) {
	d.mu.Lock()
	c, ok := d.ranges[namespace]
	d.mu.Unlock()
	if ok && time.Since(c.at) < rangesTTL {
		return c.ranges, nil
	}
	r, err := clusternet.Find(ctx, d.cs, namespace)
	if err != nil {
		return r, err
	}
	d.mu.Lock()
	if d.ranges == nil {
		d.ranges = map[string]cachedRanges{}
	}
	d.ranges[namespace] = cachedRanges{ranges: r, at: time.Now()}
	d.mu.Unlock()
	return r, nil
}

// runPermitted checks what an inspection agent for a run needs in
// namespace.
func (d *Daemon) runPermitted(ctx context.Context, namespace string) error {
	return d.permitted(ctx, access.Inspect, namespace, access.Objects{}, "run", inspectRole)
}
