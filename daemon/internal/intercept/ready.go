package intercept

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/tunnel"
)

// ReadyTimeout bounds the readiness check: how long the agents probe the
// Service from inside the cluster before the intercept goes on with a
// warning.
const ReadyTimeout = 10 * time.Second

// readyCheck is one readiness check: the agents of pods, reached through
// their tunnels, probe the Service's address until every pod's agent
// answers (agent/internal/readyprobe/spec.md).
type readyCheck struct {
	svc  string // for messages: service/NAME port
	addr string // ClusterIP:port
	// agents by pod, and the node each pod runs on: one agent per node
	// probes, since each node applies the Service's rules on its own.
	agents map[string]agent.Service
	nodes  map[string]string
	// others probes from the nodes in otherNodes, where no pod of agents
	// runs (nodeprobers.go); unchecked names the nodes neither covers.
	others     *nodeProbers
	otherNodes []string
	unchecked  string
	// timeout bounds the probing (ReadyTimeout when zero).
	timeout  time.Duration
	log      *slog.Logger
	progress func(string)
}

// run waits until connections to the Service from each node reach the
// agents of every pod, and returns nil then. When that cannot be
// confirmed it warns and returns nil too (the intercept goes on, as it
// did with a fixed wait), and returns errNoProbe when no probe could run
// at all (the caller falls back to the fixed wait). Only ctx's end is an
// error.
//
// Why not fail: the probe comes from the app's own pods, and a
// NetworkPolicy that admits only some callers, a CNI without hairpin
// traffic or a mesh's authorization can stop it while the Service works
// for every real caller; an intercept that worked before must not start
// failing there.
func (r readyCheck) run(ctx context.Context) error {
	if r.timeout <= 0 {
		r.timeout = ReadyTimeout
	}
	pods := slices.Sorted(maps.Keys(r.agents))
	if len(pods) == 0 {
		return errNoProbe
	}
	var nonce [agent.ProbeNonceSize]byte
	rand.Read(nonce[:])
	start := time.Now()
	msg := fmt.Sprintf("checking from inside the cluster that %s reaches the agents of %d pods", r.svc, len(pods))
	if len(r.otherNodes) > 0 {
		msg += fmt.Sprintf(", also from %s (probe pods, as no intercepted pod runs there)", strings.Join(r.otherNodes, ", "))
	}
	r.progress(msg)

	// Every agent answers the nonce from now until it is forgotten (or
	// the TTL, should the daemon go away meanwhile).
	ttl := r.timeout + 5*time.Second
	if len(r.otherNodes) > 0 {
		ttl += proberStartTimeout
	}
	errs := r.each(ctx, pods, func(ctx context.Context, _ int, a agent.Service) error {
		return a.ExpectProbe(ctx, nonce[:], ttl, false)
	})
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		r.each(fctx, pods, func(ctx context.Context, _ int, a agent.Service) error { return a.ExpectProbe(ctx, nonce[:], 0, true) })
	}()
	for i, err := range errs {
		if err != nil {
			// An agent image from before readiness probes, or a tunnel
			// gone: nothing to confirm with.
			r.log.Warn("readiness probe not registered", "pod", pods[i], "err", err)
			return fmt.Errorf("%w: pod %s: %v", errNoProbe, pods[i], err)
		}
	}

	probers := r.probers(pods)
	results := make([]agent.ServiceProbeResult, len(probers))
	perrs := make([]error, len(probers))
	var wg sync.WaitGroup
	for i := range probers {
		wg.Go(func() {
			p := &probers[i]
			a := r.agents[p.pod]
			if p.probePod {
				var err error
				if p.pod, a, err = r.others.wait(ctx, p.node); err != nil {
					perrs[i] = err
					return
				}
			}
			results[i], perrs[i] = a.ProbeService(ctx, agent.ServiceProbeRequest{Address: r.addr, Nonce: nonce[:], Expect: pods, Timeout: r.timeout})
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var warnings []string
	connections := 0
	for i, p := range probers {
		res := results[i]
		for _, n := range res.Answered {
			connections += n
		}
		connections += res.Missed + res.Failed
		switch {
		case perrs[i] != nil && p.probePod:
			warnings = append(warnings, fmt.Sprintf("from node %s: no probe pod (%v)", p.node, perrs[i]))
		case perrs[i] != nil:
			warnings = append(warnings, fmt.Sprintf("pod %s could not probe: %v", p.pod, perrs[i]))
		case res.Ready:
		case len(res.Answered) == 0 && res.Missed == 0:
			warnings = append(warnings, fmt.Sprintf("from node %s (pod %s) %s could not be reached (%s)", p.node, p.pod, r.addr, res.LastError))
		default:
			var silent []string
			for _, want := range pods {
				if res.Answered[want] == 0 {
					silent = append(silent, want)
				}
			}
			total := res.Missed + res.Failed + sum(res.Answered)
			msg := fmt.Sprintf("from node %s (pod %s) in %s, of %d connections %d reached an agent, %d something else, %d none",
				p.node, p.pod, res.Elapsed.Round(time.Millisecond), total, sum(res.Answered), res.Missed, res.Failed)
			if res.LastError != "" {
				msg += " (" + res.LastError + ")"
			}
			if len(silent) > 0 {
				msg += "; never answered: " + strings.Join(silent, ", ")
			}
			warnings = append(warnings, msg)
		}
	}
	from := make([]string, len(probers))
	for i, p := range probers {
		from[i] = p.node + "/" + p.pod
	}
	r.log.Info("readiness check", "service", r.svc, "pods", pods, "probers", from, "results", results, "elapsed", time.Since(start))
	if len(warnings) > 0 {
		if r.unchecked != "" {
			warnings = append(warnings, "not checked: "+r.unchecked)
		}
		r.progress(fmt.Sprintf("warning: could not confirm that %s reaches the agents (%s); going on: callers may reach the app for a while",
			r.svc, strings.Join(warnings, "; ")))
		return nil
	}
	msg = fmt.Sprintf("%s reaches the agents of %d pods from %d nodes (%d connections, %s)", r.svc, len(pods), len(probers),
		connections, time.Since(start).Round(time.Millisecond))
	if r.unchecked != "" {
		msg += "; not checked: " + r.unchecked
	}
	r.progress(msg)
	return nil
}

// errNoProbe: no readiness probe could run.
var errNoProbe = errors.New("no readiness probe could run")

// prober is where one node's probe comes from: pod's agent, or the
// node's probe pod (pod set once it is created).
type prober struct {
	node, pod string
	probePod  bool
}

// probers picks one pod per node (the first by name), then the probe pod
// of each other node.
func (r readyCheck) probers(pods []string) []prober {
	seen := map[string]bool{}
	var out []prober
	for _, p := range pods {
		n := r.nodes[p]
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, prober{node: n, pod: p})
	}
	for _, n := range r.otherNodes {
		if !seen[n] {
			seen[n] = true
			out = append(out, prober{node: n, probePod: true})
		}
	}
	return out
}

// each calls f for the agent of every pod at once and returns the errors
// in pods' order.
func (r readyCheck) each(ctx context.Context, pods []string, f func(ctx context.Context, i int, a agent.Service) error) []error {
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() { errs[i] = f(ctx, i, r.agents[p]) })
	}
	wg.Wait()
	return errs
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// serviceAddr is where in-cluster callers reach port of svc, or "" when
// no node proxies it (a headless Service: callers reach the pods
// directly, by the addresses DNS gives).
func serviceAddr(svc *corev1.Service, port corev1.ServicePort) string {
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return ""
	}
	return net.JoinHostPort(ip, strconv.Itoa(int(port.Port)))
}

// waitReady waits until svc sends the port's connections to the agents
// (readyCheck) of the pods in links, falling back to the fixed settle when
// no probe can run. The pods' nodes, and the agents' image, are read from
// the cluster.
func (m *Manager) waitReady(ctx context.Context, svc *corev1.Service, port corev1.ServicePort, sel string,
	links map[string]agent.Service, others *nodeProbers, progress func(string)) error {
	if serviceAddr(svc, port) == "" {
		return nil
	}
	var nodes map[string]string
	var image string
	var all *nodesRead
	if len(links) > 0 {
		// The cluster's nodes are read beside the pods'.
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		all = readNodes(rctx, m.CS)
		var err error
		if nodes, image, err = podNodes(ctx, m.CS, svc.Namespace, sel); err != nil {
			return err
		}
	}
	return m.checkReadyWith(ctx, svc, port, nodes, links, image, others, all, progress)
}

// checkReady is waitReady with the pods' nodes known; image is the
// agent's, which the probe pods of the other nodes run. others holds the
// probe pods started early (nil: none; the caller closes it).
func (m *Manager) checkReady(ctx context.Context, svc *corev1.Service, port corev1.ServicePort, nodes map[string]string,
	links map[string]agent.Service, image string, others *nodeProbers, progress func(string)) error {
	return m.checkReadyWith(ctx, svc, port, nodes, links, image, others, nil, progress)
}

// checkReadyWith is checkReady with the cluster's nodes being read (all;
// nil: read them when needed).
func (m *Manager) checkReadyWith(ctx context.Context, svc *corev1.Service, port corev1.ServicePort, nodes map[string]string,
	links map[string]agent.Service, image string, others *nodeProbers, all *nodesRead, progress func(string)) error {
	addr := serviceAddr(svc, port)
	if addr == "" {
		return nil
	}
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	err := errNoProbe
	if len(links) > 0 {
		rc := readyCheck{svc: fmt.Sprintf("service/%s port %d", svc.Name, port.Port), addr: addr, agents: links, nodes: nodes,
			timeout: m.ReadyTimeout, log: log, progress: progress}
		if m.Dialer != nil && image != "" {
			covered := map[string]bool{}
			for p := range links {
				covered[nodes[p]] = true
			}
			if all == nil {
				all = readNodes(ctx, m.CS)
			}
			rc.otherNodes, rc.unchecked = all.others(covered)
			if len(rc.otherNodes) > 0 {
				if others == nil {
					others = newNodeProbers(m.CS, m.Dialer, svc.Namespace, image, log)
					defer others.close()
				}
				rc.others = others
				rc.others.start(ctx, rc.otherNodes)
			}
		}
		err = rc.run(ctx)
	}
	if !errors.Is(err, errNoProbe) {
		return err
	}
	// No probe: the fixed wait for kube-proxy of before.
	log.Warn("no readiness probe; waiting a fixed time", "service", svc.Name, "err", err)
	progress(fmt.Sprintf("letting the nodes apply service/%s's new endpoints (%s; the agents could not be asked to check)", svc.Name, m.settle()))
	select {
	case <-time.After(m.settle()):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// podNodes maps the pods sel selects to their nodes, and gives the image
// of their agent containers.
func podNodes(ctx context.Context, cs kubernetes.Interface, ns, sel string) (map[string]string, string, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, "", fmt.Errorf("list the pods for the readiness check: %w", err)
	}
	out := map[string]string{}
	image := ""
	for _, p := range list.Items {
		out[p.Name] = p.Spec.NodeName
		for _, c := range p.Spec.Containers {
			if c.Name == agentspec.Container {
				image = c.Image
			}
		}
	}
	return out, image, nil
}

// agentLinks opens a tunnel to the agent of every ready pod sel selects
// (a record-only start holds none); close them with closeLinks.
func (m *Manager) agentLinks(ctx context.Context, ns, sel string, token []byte) (map[string]*agent.Link, error) {
	if m.Dialer == nil {
		return nil, nil
	}
	list, err := m.CS.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	links := map[string]*agent.Link{}
	var wg sync.WaitGroup
	var errs []error
	for i := range list.Items {
		p := &list.Items[i]
		if ready, _ := agentState(p); !ready {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			c, err := m.Dialer.DialPod(cctx, ns, p.Name, agent.DefaultTunnelPort)
			if err == nil {
				var l *agent.Link
				if l, err = agent.Connect(cctx, c, tunnel.DefaultConfig(token)); err == nil {
					mu.Lock()
					links[p.Name] = l
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			errs = append(errs, fmt.Errorf("pod %s: %w", p.Name, err))
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		closeLinks(links)
		return nil, errors.Join(errs...)
	}
	return links, nil
}

func closeLinks(links map[string]*agent.Link) {
	for _, l := range links {
		l.Close()
	}
}

// services gives each link's agent.
func services(links map[string]*agent.Link) map[string]agent.Service {
	out := make(map[string]agent.Service, len(links))
	for n, l := range links {
		out[n] = l.Agent()
	}
	return out
}

// readyIntercept waits until the Service reaches the agents ic holds
// tunnels to; on failure (ctx ended) it ends the intercept.
func (m *Manager) readyIntercept(ctx context.Context, ic *Intercept, svc *corev1.Service, others *nodeProbers, progress func(string)) error {
	err := m.waitReady(ctx, svc, ic.ServicePort, ic.tunnels.sel, ic.tunnels.agents(), others, progress)
	if err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		ic.Leave(lctx)
	}
	return err
}

// readyRecording waits until the Service reaches the agents of a
// record-only start, through tunnels opened for the check.
func (m *Manager) readyRecording(ctx context.Context, w journal.Workload, svc *corev1.Service, plan inject.Plan, token []byte,
	others *nodeProbers, progress func(string)) error {
	sel, err := workload.Client{CS: m.CS}.Selector(ctx, w)
	if err != nil {
		return err
	}
	links, err := m.agentLinks(ctx, w.Namespace, sel.String(), token)
	if err != nil {
		// The check only: recording goes on without it.
		if m.Log != nil {
			m.Log.Warn("tunnels for the readiness check", "err", err)
		}
		links = nil
	}
	defer closeLinks(links)
	return m.waitReady(ctx, svc, plan.ServicePort, sel.String(), services(links), others, progress)
}

// agents gives the agent of every pod t has a live tunnel to.
func (t *tunnels) agents() map[string]agent.Service {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]agent.Service, len(t.links))
	for n, l := range t.links {
		if !l.Ended() {
			out[n] = l.Agent()
		}
	}
	return out
}
