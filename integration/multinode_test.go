//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/recording"
)

// The multi-node tests run tether's commands with the workload's pods on
// both nodes of the local cluster (`make cluster-up NODES=2`): callers on
// one node, the pods they reach on the other, so every request crosses
// the veth between the nodes, every tunnel to an agent on node 2 goes
// through node 2's kubelet (not the API server's), and NetworkPolicies are
// enforced by the other node's policy controller.

// nodeNames returns the local cluster's two node names.
func nodeNames() (one, two string) {
	cfg := cluster.DefaultConfig("/")
	return cfg.NodeName, cfg.Node2Name
}

// requireTwoNodes fails the test unless both nodes of the local cluster
// are Ready: these tests are part of `make test` (its stage `make
// test-multinode`), never skipped.
func (e *env) requireTwoNodes() {
	e.t.Helper()
	one, two := nodeNames()
	for _, name := range []string{one, two} {
		n, err := e.cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatalf("this test needs the local cluster's second node: start it with `make cluster-up NODES=2`, or run them with `make test-multinode`, which does (node %s: %v)", name, err)
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		if !ready {
			e.t.Fatalf("this test needs both nodes Ready; node %s is not: `make cluster-status` tells why, `make cluster-up NODES=2` restarts it", name)
		}
	}
}

// onNode pins the orders pods to the node named node.
func onNode(node string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
}

// onePerNode puts each orders pod on a node of its own, during rollouts
// too: the scheduler refuses two on one node, and a rollout first removes
// an old pod, then starts its replacement where it was.
func onePerNode(d *appsv1.Deployment) {
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &zero, MaxUnavailable: &one}}
	d.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey:   "kubernetes.io/hostname",
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
		}},
	}}
}

// ordersByNode returns the running orders pods by node, failing unless
// there is exactly one on each node.
func (e *env) ordersByNode() map[string]*corev1.Pod {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		e.t.Fatal(err)
	}
	one, two := nodeNames()
	by := map[string]*corev1.Pod{}
	current := e.newestTemplate(pods.Items)
	for i := range current {
		p := &current[i]
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if by[p.Spec.NodeName] != nil {
			e.t.Fatalf("two orders pods on node %s: %s and %s", p.Spec.NodeName, by[p.Spec.NodeName].Name, p.Name)
		}
		by[p.Spec.NodeName] = p
	}
	if by[one] == nil || by[two] == nil || len(by) != 2 {
		e.t.Fatalf("want one orders pod on each of %s and %s; have %d pods on %d nodes", one, two, len(pods.Items), len(by))
	}
	return by
}

// podURL is the URL of path on pod at the port the orders Service sends to
// now (the app's, or the agent's while tether intercepts or records).
func (e *env) podURL(pod *corev1.Pod, path string) string {
	e.t.Helper()
	svc, err := e.cs.CoreV1().Services(e.ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	target := svc.Spec.Ports[0].TargetPort
	port := int(target.IntVal)
	if target.Type == intstr.String {
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == target.StrVal {
					port = int(cp.ContainerPort)
				}
			}
		}
	}
	if port == 0 {
		e.t.Fatalf("pod %s has no port %s (the Service's target)", pod.Name, target.String())
	}
	return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + path
}

// TestMultiNodeIntercept: an intercept of two replicas, one on each node,
// with either tunnel path: port-forward (the tunnel to the agent on node 2
// goes through node 2's kubelet, not the API server's) and direct (that
// agent dials this machine across the link between the nodes). A caller on
// each node reaches the laptop through the pod on the other node (pod to
// pod across nodes) and through the Service; rollback restores the
// workload and the app serves both callers again.
func TestMultiNodeIntercept(t *testing.T) {
	for _, path := range []string{"port-forward", "direct"} {
		t.Run(path, func(t *testing.T) { testMultiNodeIntercept(t, path) })
	}
}

func testMultiNodeIntercept(t *testing.T, path string) {
	e := newEnv(t)
	e.requireTwoNodes()
	one, two := nodeNames()
	e.deployOrdersWith(2, onePerNode)
	callers := map[string]string{one: e.clientPodOn("client-1", one, nil), two: e.clientPodOn("client-2", two, nil)}
	before := e.snapshot()
	port := laptop(t)

	out := e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port), "--path", path, "-o", "json")
	var info struct{ Pods []string }
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Pods) != 2 {
		t.Fatalf("intercept covers pods %v (%v), want 2:\n%s", info.Pods, err, out)
	}
	e.waitSettled(2, nil)
	pods := e.ordersByNode()
	for _, pair := range [][2]string{{one, two}, {two, one}} {
		caller, pod := callers[pair[0]], pods[pair[1]]
		for i := range 3 {
			if got := e.servedByURL(caller, e.podURL(pod, "/whoami")); got != "laptop" {
				t.Errorf("request %d from %s (node %s) to pod %s (node %s) served by %q, want laptop", i+1, caller, pair[0], pod.Name, pair[1], got)
			}
		}
	}
	for _, caller := range callers {
		e.requireAll(caller, "laptop", 10)
	}

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)
	pods = e.ordersByNode()
	for _, pair := range [][2]string{{one, two}, {two, one}} {
		if got := e.servedByURL(callers[pair[0]], e.podURL(pods[pair[1]], "/whoami")); got != "app" {
			t.Errorf("after rollback, from node %s to the pod on node %s: served by %q, want app", pair[0], pair[1], got)
		}
	}
}

// TestMultiNodeReadyFromEveryNode: the one orders pod runs on node 1, its
// caller on node 2, where no intercepted pod runs. The readiness check
// probes from node 2 too, through a short-lived probe pod it deletes
// after, so the caller's first requests after `intercept` returns reach
// the laptop (a check from node 1 alone once let 4 of 10 through node 2's
// old rules to the app).
func TestMultiNodeReadyFromEveryNode(t *testing.T) {
	e := newEnv(t)
	e.requireTwoNodes()
	one, two := nodeNames()
	e.deployOrdersWith(1, onNode(one))
	caller := e.clientPodOn("client-2", two, nil)
	e.waitSettled(1, nil)
	before := e.snapshot()
	port := laptop(t)

	args := agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))
	_, errOut, code := e.tether(append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 {
		t.Fatalf("intercept exited %d:\n%s", code, errOut)
	}
	t.Logf("intercept's progress:\n%s", errOut)
	for _, want := range []string{"also from " + two + " (probe pods", "reaches the agents of 1 pods from 2 nodes"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("intercept's progress does not say %q:\n%s", want, errOut)
		}
	}
	e.requireAll(caller, "laptop", 10)
	// The probe pod is gone, not left for the user to delete.
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: agentspec.LabelReadyProbe})
		return err == nil && len(pods.Items) == 0, nil
	}); err != nil {
		t.Errorf("probe pods left in namespace %s after the intercept", e.ns)
	}

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestMultiNodeRecord: recording two replicas, one on each node; each
// caller's requests to the pod on the other node are listed with that pod
// as the one that served them.
func TestMultiNodeRecord(t *testing.T) {
	e := newEnv(t)
	e.requireTwoNodes()
	one, two := nodeNames()
	e.deployOrdersWith(2, onePerNode)
	callers := map[string]string{one: e.clientPodOn("client-1", one, nil), two: e.clientPodOn("client-2", two, nil)}
	e.mustTether("record", "orders", "--port", "http")
	e.waitSettled(2, nil)
	pods := e.ordersByNode()

	want := map[string]string{} // path -> pod that must have served it
	for _, pair := range [][2]string{{one, two}, {two, one}} {
		pod := pods[pair[1]]
		path := "/orders/" + map[string]string{one: "1", two: "2"}[pair[1]]
		if out, ok := e.exec(callers[pair[0]], "/tether-demo", "get", e.podURL(pod, path)); !ok {
			t.Fatalf("GET %s from node %s to pod %s on node %s: %s", path, pair[0], pod.Name, pair[1], out)
		}
		want[path] = pod.Name
	}
	rows := e.requestsList()
	got := map[string]string{}
	for _, r := range rows {
		if r.Method != "GET" || r.Status == 0 || r.Destination != recording.ToApp {
			t.Errorf("row %+v: want a GET answered by the app", r)
		}
		got[r.Path] = r.Pod
	}
	if len(rows) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listed %d requests by path and pod %v, want %v", len(rows), got, want)
	}
}

// TestMultiNodeTraceAndPolicy: the orders pod on node 2, callers on node 1.
// The trace from node 1 is healthy; a NetworkPolicy admitting only callers
// labelled role=caller is enforced across the nodes (the labelled caller
// served, the other refused), and the trace from the refused caller names
// the policy as the first broken step.
func TestMultiNodeTraceAndPolicy(t *testing.T) {
	e := newEnv(t)
	e.requireTwoNodes()
	one, two := nodeNames()
	e.deployOrdersWith(1, onNode(two))
	allowed := e.clientPodOn("allowed", one, map[string]string{"role": "caller"})
	other := e.clientPodOn("other", one, nil)
	orders := e.firstPod("orders")

	rep, code := e.trace("pod/"+other, "svc/orders")
	if code != 0 || rep.FirstBroken != "" {
		t.Fatalf("trace from node 1 to the pod on node 2: exit %d, want a healthy path:\n%s", code, reportText(rep))
	}
	for _, p := range step(t, rep, "probe").Probe.Probes {
		if !p.Connected || p.HTTPStatus != 200 {
			t.Errorf("probe %s %s: connected %v, HTTP %d %s", p.What, p.Address, p.Connected, p.HTTPStatus, p.HTTPError)
		}
	}
	if sv := step(t, rep, "service").Service; len(sv.Endpoints) != 1 || sv.Endpoints[0].Pod != orders {
		t.Errorf("service step endpoints %+v, want pod %s", sv.Endpoints, orders)
	}

	ctx := context.Background()
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-from-callers"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "caller"}},
			}}}},
		},
	}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Node 2's policy controller programs its rules a moment after the
	// policy is created: wait until the other caller is refused.
	refused := func() string {
		if got := e.servedBy(other); !strings.HasPrefix(got, "failed") {
			return got
		}
		return "refused"
	}
	if _, seen, ok := until(refused, "refused", time.Now(), time.Minute, 500*time.Millisecond); !ok {
		t.Fatalf("with the policy, the unlabelled caller on node 1 is still served a minute later: %q", seen[max(0, len(seen)-3):])
	}
	if got := e.servedBy(other); !strings.HasPrefix(got, "failed") {
		t.Errorf("with the policy, the unlabelled caller on node 1 is served by %q; want its request refused", got)
	} else {
		t.Logf("with the policy, the unlabelled caller on node 1: %s", got)
	}
	for i := range 3 {
		if got := e.servedBy(allowed); got != "app" {
			t.Errorf("request %d: with the policy, the labelled caller on node 1 is served by %q, want app", i+1, got)
		}
	}
	rep, code = e.trace("pod/"+other, "svc/orders")
	if code != 3 || rep.FirstBroken != "policy" {
		t.Fatalf("trace from the refused caller: exit %d, first broken %q; want 3, policy:\n%s", code, rep.FirstBroken, reportText(rep))
	}
	if pol := step(t, rep, "policy"); !strings.Contains(pol.Summary, e.ns+"/orders-from-callers") {
		t.Errorf("the policy step does not name the policy: %s", pol.Summary)
	}
	if rep, code := e.trace("pod/"+allowed, "svc/orders"); code != 0 || step(t, rep, "policy").Status != daemon.TraceOK {
		t.Errorf("trace from the labelled caller: exit %d, want healthy:\n%s", code, reportText(rep))
	}
}

// TestMultiNodeCapture: a capture of the orders pod on node 2 (its agent
// attached through node 2's kubelet) holds the requests a caller on node 1
// sent it.
func TestMultiNodeCapture(t *testing.T) {
	e := newEnvLevel(t, "baseline") // capture needs CAP_NET_RAW, which restricted forbids
	e.requireTwoNodes()
	one, two := nodeNames()
	e.deployOrdersWith(1, onNode(two))
	pod := e.firstPod("orders")
	client := e.clientPodOn("client", one, nil)

	file := filepath.Join(t.TempDir(), "orders.pcap")
	wait := e.startCapture(pod, "--filter", "tcp port 8080", "-w", file, "--duration", "8s")
	for i := range 3 {
		if out, ok := e.exec(client, "/tether-demo", "get", fmt.Sprintf("http://orders.%s.svc.cluster.local/orders/7?probe=n2-%d", e.ns, i)); !ok {
			t.Fatalf("request from node 1 to the pod on node 2 failed: %s", out)
		}
	}
	if code, log := wait(); code != 0 {
		t.Fatalf("capture exited %d:\n%s", code, log)
	}
	uris := tsharkURIs(t, file)
	for i := range 3 {
		if want := fmt.Sprintf("/orders/7?probe=n2-%d", i); !strings.Contains(uris, want) {
			t.Errorf("the pcap lacks request %s; tshark saw:\n%s", want, uris)
		}
	}
}
