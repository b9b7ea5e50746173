//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

const markLabel = "tether.dev/intercept"

// podState is what --no-restart must leave alone: each pod's UID, its
// containers' restart counts, and its labels (the mark aside, until
// rollback).
type podState struct {
	uid      string
	restarts map[string]int32
	labels   map[string]string
}

func (e *env) podStates() map[string]podState {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]podState{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		s := podState{uid: string(p.UID), restarts: map[string]int32{}, labels: maps.Clone(p.Labels)}
		for _, c := range p.Status.ContainerStatuses {
			s.restarts[c.Name] = c.RestartCount
		}
		out[p.Name] = s
	}
	return out
}

// requireNotRestarted: the same pods, none of whose containers restarted.
func (e *env) requireNotRestarted(before map[string]podState, when string) {
	e.t.Helper()
	after := e.podStates()
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			e.t.Errorf("%s: pod %s is gone", when, name)
			continue
		}
		if a.uid != b.uid {
			e.t.Errorf("%s: pod %s was replaced (uid %s -> %s)", when, name, b.uid, a.uid)
		}
		if !maps.Equal(a.restarts, b.restarts) {
			e.t.Errorf("%s: pod %s restarted: %v -> %v", when, name, b.restarts, a.restarts)
		}
	}
}

// readyEndpointPods lists the pods the orders Service routes to.
func (e *env) readyEndpointPods() map[string]bool {
	e.t.Helper()
	slices, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=orders"})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef != nil && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				out[ep.TargetRef.Name] = true
			}
		}
	}
	return out
}

// killAgent kills, from the node (the tests run on it, as root), the
// process of the pod's intercept agent, as the OOM killer or a crash
// would: the ephemeral container's ID names its cgroup.
func (e *env) killAgent(pod string) {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var id string
	for _, s := range p.Status.EphemeralContainerStatuses {
		if s.State.Running != nil {
			_, id, _ = strings.Cut(s.ContainerID, "://")
		}
	}
	if id == "" {
		e.t.Fatalf("pod %s has no running ephemeral agent", pod)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		e.t.Fatal(err)
	}
	killed := 0
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cgroup"))
		if err == nil && strings.Contains(string(cg), id) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				killed++
			}
		}
	}
	if killed == 0 {
		e.t.Fatalf("no process of the agent container %s of pod %s on this node", id, pod)
	}
}

// TestInterceptNoRestart: an intercept --no-restart of 3 replicas sends
// every request to the laptop and restarts no pod; a 4th pod gets its
// agent and mark; an agent killed takes its pod out of the Service; after
// kill -9 of the daemon the app serves; rollback restores the Service and
// the pods' labels field for field.
func TestInterceptNoRestart(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(3)
	client := e.clientPod("client")
	ctx := context.Background()
	svcBefore, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmplBefore := e.snapshot().template
	podsBefore := e.podStates()
	port := laptop(t)

	start := time.Now()
	e.mustTether(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(port), "--no-restart")...)
	t.Logf("first intercept --no-restart of 3 replicas took %s", time.Since(start).Round(10*time.Millisecond))

	var st struct {
		Daemon struct {
			PID        int
			Intercepts []struct{ Mode string }
		}
	}
	if err := json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Daemon.Intercepts) != 1 || st.Daemon.Intercepts[0].Mode != "no-restart" {
		t.Errorf("status: intercepts %+v, want one in mode no-restart", st.Daemon.Intercepts)
	}
	e.requireAll(client, "laptop", 30)
	e.requireNotRestarted(podsBefore, "after the intercept")
	if d := e.snapshot().template; !equality.Semantic.DeepEqual(tmplBefore, d) {
		t.Errorf("the pod template changed:\nbefore %+v\nafter  %+v", tmplBefore, d)
	}
	// Pods whose agents answered after the first ones' are marked in the
	// background.
	e.waitMarked(3)

	// Scale up: the new pod gets its agent and mark while the daemon runs.
	e.scaleOrders(4)
	e.waitMarked(4)
	e.requireAll(client, "laptop", 30)

	// Kill one agent's process: its pod leaves the Service.
	var victim string
	for name := range podsBefore {
		victim = name
		break
	}
	killed := time.Now()
	e.killAgent(victim)
	var unmarked time.Duration
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if unmarked == 0 && e.podStates()[victim].labels[markLabel] == "" {
			unmarked = time.Since(killed)
		}
		return !e.readyEndpointPods()[victim], nil
	})
	if err != nil {
		t.Fatalf("pod %s still in the Service 30s after its agent was killed", victim)
	}
	t.Logf("pod %s unmarked %s and out of the Service's endpoints %s after its agent was killed", victim,
		unmarked.Round(10*time.Millisecond), time.Since(killed).Round(10*time.Millisecond))
	if e.podStates()[victim].labels[markLabel] != "" {
		t.Errorf("pod %s is still marked", victim)
	}
	// kube-proxy applies the change on the node (intercept.ProxySettle).
	time.Sleep(2 * time.Second)
	e.requireAll(client, "laptop", 30)

	// kill -9 of the daemon: each agent sends its connections to the app
	// once it sees its tunnel gone, within 2 s by its dead-peer check.
	if err := syscall.Kill(st.Daemon.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	daemonKilled := time.Now()
	t.Logf("served by the app again %s after kill -9 of the daemon", e.converge(client, "app", 1))
	time.Sleep(time.Until(daemonKilled.Add(2 * time.Second)))
	e.requireAll(client, "app", 30)

	// Both dead: a second agent killed with no daemon to unmark its pod.
	var second string
	for name := range podsBefore {
		if name != victim {
			second = name
			break
		}
	}
	e.killAgent(second)

	// A new daemon says what the dead one left.
	e.mustTether("connect")
	if st := e.mustTether("status"); !strings.Contains(st, "deployment/orders in "+e.ns+": an intercept or recording --no-restart this daemon does not hold") {
		t.Errorf("status does not name the intercept the dead daemon left:\n%s", st)
	}
	out := e.mustTether("rollback", "orders")
	if !strings.Contains(out, "ephemeral container") {
		t.Errorf("rollback does not say the ephemeral agents stay:\n%s", out)
	}
	svcAfter, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(svcBefore.Spec.Selector, svcAfter.Spec.Selector) {
		t.Errorf("service selector not restored: before %v after %v", svcBefore.Spec.Selector, svcAfter.Spec.Selector)
	}
	if !equality.Semantic.DeepEqual(svcBefore.Spec.Ports, svcAfter.Spec.Ports) {
		t.Errorf("service ports not restored: before %+v after %+v", svcBefore.Spec.Ports, svcAfter.Spec.Ports)
	}
	after := e.podStates()
	for name, b := range podsBefore {
		if !maps.Equal(b.labels, after[name].labels) {
			t.Errorf("pod %s labels not restored: before %v after %v", name, b.labels, after[name].labels)
		}
	}
	for name, s := range after {
		if _, ok := s.labels[markLabel]; ok {
			t.Errorf("pod %s keeps the mark after rollback", name)
		}
	}
	e.requireNotRestarted(podsBefore, "after rollback")
	cms, _ := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "tether.dev/journal=true"})
	if len(cms.Items) != 0 {
		t.Errorf("journal entries remain: %d", len(cms.Items))
	}
	e.converge(client, "app", 5)
	e.requireAll(client, "app", 30)
}

// TestInterceptNoRestartRefusals: a workload with no ready pod is refused
// with exit 2 and nothing changes.
func TestInterceptNoRestartRefusals(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	e.scaleOrders(0)
	ctx := context.Background()
	wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return len(e.podStates()) == 0, nil
	})
	svcBefore, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)), "--no-restart", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	_, errOut, code := e.tether(args...)
	if code != 2 || !strings.Contains(errOut, "has no ready pod") {
		t.Errorf("exit %d, stderr %q; want 2 and \"has no ready pod\"", code, errOut)
	}
	svcAfter, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svcAfter.ResourceVersion != svcBefore.ResourceVersion {
		t.Errorf("the Service changed: %+v", svcAfter.Spec)
	}
	cms, _ := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "tether.dev/journal=true"})
	if len(cms.Items) != 0 {
		t.Errorf("a journal was written: %d", len(cms.Items))
	}
}

func (e *env) scaleOrders(n int32) {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.cs.AppsV1().Deployments(e.ns).GetScale(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Spec.Replicas = n
	if _, err := e.cs.AppsV1().Deployments(e.ns).UpdateScale(ctx, "orders", s, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitMarked waits until n pods are marked and the Service routes to
// exactly them, then for kube-proxy.
func (e *env) waitMarked(n int) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		marked := map[string]bool{}
		for name, s := range e.podStates() {
			if s.labels[markLabel] != "" {
				marked[name] = true
			}
		}
		return len(marked) == n && maps.Equal(marked, e.readyEndpointPods()), nil
	})
	if err != nil {
		e.t.Fatalf("%d pods never marked and routed to", n)
	}
	time.Sleep(2 * time.Second)
}

// TestNoRestartDocumentedRole: a user bound to exactly the
// tether-no-restart Role of docs/intercept.md intercepts --no-restart,
// leaves, intercepts again through the same agents, and rolls back after
// its daemon was killed.
func TestNoRestartDocumentedRole(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	role := documentedRoles(t)["tether-no-restart"]
	if role == nil {
		t.Fatal("docs/intercept.md has no Role tether-no-restart")
	}
	kc := e.userWithRoles("dev", role)
	as := func(args ...string) (string, string, int) {
		t.Helper()
		return runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, append(args, "--kubeconfig", kc, "-n", e.ns)...)
	}
	ctx := context.Background()
	svcBefore, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podsBefore := e.podStates()
	port := strconv.Itoa(laptop(t))
	for i := range 2 {
		if _, stderr, code := as(agentImage("intercept", "orders", "--port", "http:"+port, "--no-restart")...); code != 0 {
			t.Fatalf("intercept %d exited %d:\n%s", i+1, code, stderr)
		}
		e.requireAll(client, "laptop", 5)
		if i == 0 {
			if _, stderr, code := as("leave", "orders"); code != 0 {
				t.Fatalf("leave exited %d:\n%s", code, stderr)
			}
		}
	}
	for name := range podsBefore {
		e.wantEphemeral(name, 1, "after two intercepts")
	}
	var st struct{ Daemon struct{ PID int } }
	stdout, _, _ := as("status", "-o", "json")
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || st.Daemon.PID <= 0 {
		t.Fatalf("status: %v %s", err, stdout)
	}
	if err := syscall.Kill(st.Daemon.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := as("rollback", "orders"); code != 0 {
		t.Fatalf("rollback exited %d:\n%s", code, stderr)
	}
	svcAfter, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(svcBefore.Spec, svcAfter.Spec) {
		t.Errorf("service not restored:\nbefore %+v\nafter  %+v", svcBefore.Spec, svcAfter.Spec)
	}
	after := e.podStates()
	for name, b := range podsBefore {
		if !maps.Equal(b.labels, after[name].labels) {
			t.Errorf("pod %s labels not restored: before %v after %v", name, b.labels, after[name].labels)
		}
	}
	e.requireNotRestarted(podsBefore, "after rollback")
	e.converge(client, "app", 3)
}

// TestRecordNoRestart: record --no-restart records the requests of 2
// replicas, restarting none; leave restores the Service and pods' labels
// and the recordings stay readable.
func TestRecordNoRestart(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	ctx := context.Background()
	svcBefore, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podsBefore := e.podStates()
	out := e.mustTether(agentImage("record", "orders", "--port", "http", "--no-restart")...)
	if !strings.Contains(out, "tether leave") {
		t.Errorf("record --no-restart does not say how to stop:\n%s", out)
	}
	e.converge(client, "app", 1)
	for i := range 10 {
		if _, ok := e.exec(client, "/tether-demo", "get", "http://orders."+e.ns+".svc.cluster.local/orders/"+strconv.Itoa(i)); !ok {
			t.Errorf("request %d failed", i)
		}
	}
	e.requireNotRestarted(podsBefore, "while recording")
	seen := map[string]bool{}
	for _, r := range e.requestsList() {
		seen[r.Path] = true
	}
	for i := range 10 {
		if p := "/orders/" + strconv.Itoa(i); !seen[p] {
			t.Errorf("%s not recorded; recorded: %v", p, seen)
		}
	}
	e.mustTether("leave", "orders")
	svcAfter, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(svcBefore.Spec, svcAfter.Spec) {
		t.Errorf("service not restored:\nbefore %+v\nafter  %+v", svcBefore.Spec, svcAfter.Spec)
	}
	after := e.podStates()
	for name, b := range podsBefore {
		if !maps.Equal(b.labels, after[name].labels) {
			t.Errorf("pod %s labels not restored: before %v after %v", name, b.labels, after[name].labels)
		}
	}
	if n := len(e.requestsList()); n < 10 {
		t.Errorf("%d requests readable after leave, want the 10 recorded", n)
	}
	e.requireNotRestarted(podsBefore, "after leave")
}
