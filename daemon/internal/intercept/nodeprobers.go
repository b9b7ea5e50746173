package intercept

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/tunnel"
)

// Each node applies a Service's rules on its own, so the readiness check
// probes from every node a caller may be on: from an intercepted pod's
// agent where one runs, and elsewhere from a short-lived pod of the
// agent's image, pinned to the node, that serves the probe job only and
// is deleted when the check ends.

const (
	// MaxNodeProbers bounds the probe pods one check starts; the nodes
	// past it are named as unchecked.
	MaxNodeProbers = 16
	// proberStartTimeout bounds a probe pod's start (its image may have to
	// be pulled on a node that never ran the agent).
	proberStartTimeout = 20 * time.Second
	// proberDeadline ends a probe pod that a killed daemon could not
	// delete (activeDeadlineSeconds).
	proberDeadline = int64(120)
)

// nodeProbers are the probe pods of one readiness check, by node.
type nodeProbers struct {
	cs     kubernetes.Interface
	dialer Dialer
	ns     string
	image  string
	log    *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	byNode map[string]*nodeProber
}

// nodeProber is one probe pod: agent (over link) is set once it
// answers, err when it cannot.
type nodeProber struct {
	node, pod string
	done      chan struct{}
	link      *agent.Link
	agent     agent.Service
	err       error
}

func newNodeProbers(cs kubernetes.Interface, dialer Dialer, ns, image string, log *slog.Logger) *nodeProbers {
	return &nodeProbers{cs: cs, dialer: dialer, ns: ns, image: image, log: log, byNode: map[string]*nodeProber{}}
}

// earlyProbers starts, before the check knows which pods it checks, a
// probe pod on each Ready node that none of covered (the nodes the
// workload's pods run on now) is; the check takes those it needs, starts
// any other, and close deletes them all. Nil when there is nothing to
// start.
func (m *Manager) earlyProbers(ctx context.Context, ns, image string, covered map[string]bool) *nodeProbers {
	if m.Dialer == nil || image == "" || len(covered) == 0 {
		return nil
	}
	nodes, _ := otherNodes(ctx, m.CS, covered)
	if len(nodes) == 0 {
		return nil
	}
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := newNodeProbers(m.CS, m.Dialer, ns, image, log)
	p.start(ctx, nodes)
	return p
}

// nodeSet gives the nodes of a pod -> node map.
func nodeSet(podNodes map[string]string) map[string]bool {
	out := make(map[string]bool, len(podNodes))
	for _, n := range podNodes {
		if n != "" {
			out[n] = true
		}
	}
	return out
}

// start starts a probe pod on each node in nodes that has none yet; each
// comes up on its own (wait).
func (p *nodeProbers) start(ctx context.Context, nodes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	for _, n := range nodes {
		if p.byNode[n] != nil {
			continue
		}
		np := &nodeProber{node: n, done: make(chan struct{})}
		p.byNode[n] = np
		p.wg.Go(func() {
			defer close(np.done)
			np.link, np.err = p.run(ctx, np)
			if np.link != nil {
				np.agent = np.link.Agent()
			}
		})
	}
}

// wait returns the agent of node's probe pod once it answers.
func (p *nodeProbers) wait(ctx context.Context, node string) (pod string, a agent.Service, err error) {
	p.mu.Lock()
	np := p.byNode[node]
	p.mu.Unlock()
	if np == nil {
		return "", nil, fmt.Errorf("no probe pod was started on node %s", node)
	}
	select {
	case <-np.done:
	case <-ctx.Done():
		return np.pod, nil, ctx.Err()
	}
	if np.err != nil {
		return np.pod, nil, np.err
	}
	return np.pod, np.agent, nil
}

// close ends the probe pods: their tunnels closed, the pods deleted, also
// those still starting.
func (p *nodeProbers) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	cancel := p.cancel
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	p.wg.Wait()
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	zero := int64(0)
	var wg sync.WaitGroup
	for _, np := range p.byNode {
		if np.link != nil {
			np.link.Close()
		}
		if np.pod == "" {
			continue
		}
		wg.Go(func() {
			err := p.cs.CoreV1().Pods(p.ns).Delete(ctx, np.pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			if err != nil && !apierrors.IsNotFound(err) {
				p.log.Warn("could not delete a readiness probe pod; it ends itself within 2 minutes",
					"pod", np.pod, "node", np.node, "err", err, "remove", "kubectl -n "+p.ns+" delete pod -l "+agentspec.LabelReadyProbe)
			}
		})
	}
	wg.Wait()
}

// run creates np's pod, waits until it runs and opens the tunnel to its
// agent.
func (p *nodeProbers) run(ctx context.Context, np *nodeProber) (*agent.Link, error) {
	ctx, cancel := context.WithTimeout(ctx, proberStartTimeout)
	defer cancel()
	token := inspect.NewToken()
	created, err := p.cs.CoreV1().Pods(p.ns).Create(ctx, proberPod(np.node, p.image, token), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create a probe pod: %w", err)
	}
	p.mu.Lock()
	np.pod = created.Name
	p.mu.Unlock()
	for {
		pod, err := p.cs.CoreV1().Pods(p.ns).Get(ctx, np.pod, metav1.GetOptions{})
		if err == nil {
			running, why := proberState(pod)
			if why != "" {
				return nil, fmt.Errorf("probe pod %s: %s", np.pod, why)
			}
			if running {
				break
			}
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, fmt.Errorf("probe pod %s did not start within %s", np.pod, proberStartTimeout)
		}
	}
	// Running, but its agent may not listen yet.
	for {
		conn, err := p.dialer.DialPod(ctx, p.ns, np.pod, agent.DefaultTunnelPort)
		if err == nil {
			var l *agent.Link
			if l, err = agent.Connect(ctx, conn, tunnel.DaemonConfig(token)); err == nil {
				return l, nil
			}
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, fmt.Errorf("probe pod %s runs, its agent did not answer: %v", np.pod, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// proberPod is the probe pod for node (agentspec.ProbePodSpec), pinned
// to it, tolerating every taint (callers run on tainted nodes too).
func proberPod(node, image string, token []byte) *corev1.Pod {
	spec := agentspec.ProbePodSpec(image, token, proberDeadline, "--bootstrap-ttl", proberStartTimeout.String())
	spec.NodeName = node
	spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "tether-ready-",
			// No mesh sidecar: the probe checks the node's rules, and an
			// injected proxy would only slow the pod's start.
			Labels: map[string]string{agentspec.LabelReadyProbe: "true", "app.kubernetes.io/managed-by": "tether",
				"sidecar.istio.io/inject": "false"},
			Annotations: map[string]string{"tether.dev/purpose": "checks from node " + node + " that a Service reaches tether's agents; " +
				"deleted when the check ends (`kubectl delete pod -l " + agentspec.LabelReadyProbe + "` removes one a killed daemon left)",
				"sidecar.istio.io/inject": "false", "linkerd.io/inject": "disabled"},
		},
		Spec: spec,
	}
}

// proberState says whether a probe pod's agent runs, or why it never
// will (why non-empty).
func proberState(p *corev1.Pod) (running bool, why string) {
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Running != nil:
			return true, ""
		case c.State.Waiting != nil && (strings.Contains(c.State.Waiting.Reason, "ImagePull") || strings.HasPrefix(c.State.Waiting.Reason, "CreateContainer") ||
			c.State.Waiting.Reason == "ErrImageNeverPull" || c.State.Waiting.Reason == "InvalidImageName"):
			return false, fmt.Sprintf("%s: %s", c.State.Waiting.Reason, c.State.Waiting.Message)
		case c.State.Terminated != nil:
			return false, fmt.Sprintf("its agent exited (%s, code %d): %s", c.State.Terminated.Reason, c.State.Terminated.ExitCode,
				strings.TrimSpace(c.State.Terminated.Message))
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return false, fmt.Sprintf("failed (%s: %s)", p.Status.Reason, p.Status.Message)
	}
	return false, ""
}

// otherNodes lists the nodes a caller may be on that no pod in covered
// runs on: Ready Linux nodes, sorted, at most MaxNodeProbers of them;
// unchecked says what is left out and why ("" when nothing is).
func otherNodes(ctx context.Context, cs kubernetes.Interface, covered map[string]bool) (nodes []string, unchecked string) {
	return readNodes(ctx, cs).others(covered)
}

// nodesRead is the cluster's node list, read in the background from
// readNodes on.
type nodesRead struct {
	done chan struct{}
	list *corev1.NodeList
	err  error
}

func readNodes(ctx context.Context, cs kubernetes.Interface) *nodesRead {
	r := &nodesRead{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.list, r.err = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	}()
	return r
}

// others is otherNodes of the list once read.
func (r *nodesRead) others(covered map[string]bool) (nodes []string, unchecked string) {
	<-r.done
	list, err := r.list, r.err
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, "the cluster's other nodes, if any: you may not list nodes (docs/intercept.md, \"Permissions\")"
		}
		return nil, fmt.Sprintf("the cluster's other nodes, if any: listing nodes failed: %v", err)
	}
	var windows []string
	for _, n := range list.Items {
		if covered[n.Name] || !nodeReady(&n) {
			continue
		}
		if os := n.Labels[corev1.LabelOSStable]; os != "" && os != "linux" {
			windows = append(windows, n.Name)
			continue
		}
		nodes = append(nodes, n.Name)
	}
	slices.Sort(nodes)
	var left []string
	if len(nodes) > MaxNodeProbers {
		left = append(left, fmt.Sprintf("%d nodes past the first %d (%s, ...)", len(nodes)-MaxNodeProbers, MaxNodeProbers, nodes[MaxNodeProbers]))
		nodes = nodes[:MaxNodeProbers]
	}
	if len(windows) > 0 {
		left = append(left, "non-Linux nodes "+strings.Join(windows, ", ")+" (the agent's image is Linux only)")
	}
	return nodes, strings.Join(left, "; ")
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
