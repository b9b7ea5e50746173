//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// annotationBack is the annotation a tether sets on a Service when it
// points it at the agents again (daemon/internal/journal.AnnotationBack).
const annotationBack = "tether.dev/agents-back"

// calledFrom asks the app, through the orders Service, where the caller's
// connection came from as the app sees it: the agent's loopback address
// while the agent sits in front of the app, the client pod's address
// once it does not.
func (e *env) calledFrom(client string) string {
	e.t.Helper()
	out, ok := e.exec(client, "/tether-demo", "get", "http://orders."+e.ns+".svc.cluster.local/from")
	if !ok {
		return "failed: " + strings.TrimSpace(out)
	}
	i := strings.Index(out, "{")
	var who struct{ From string }
	if i < 0 || json.Unmarshal([]byte(out[i:]), &who) != nil {
		return "unknown: " + out
	}
	host, _, _ := strings.Cut(who.From, ":")
	return host
}

// waitServicePort waits until the orders Service's http port targets want.
func (e *env) waitServicePort(want intstr.IntOrString) *corev1.Service {
	e.t.Helper()
	var svc *corev1.Service
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		s, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		svc = s
		return s.Spec.Ports[0].TargetPort == want, nil
	})
	if err != nil {
		e.t.Fatalf("service orders port http never targeted %s (last: %s)", want.String(), svc.Spec.Ports[0].TargetPort.String())
	}
	return svc
}

// TestIdleAgentStepsAside (issue 13 item 5): once nothing has intercepted
// the agents for their idle time (--agent-idle), the daemon points the
// Service back at the app: the app sees its callers' own addresses again
// (no hop), status says the agents stepped aside, and the agents stay in
// the pods (nothing restarts). The next intercept points the Service at
// them again and is ready when it returns; a rollback from the aside
// state restores the workload and the Service exactly.
func TestIdleAgentStepsAside(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	clientIP := e.podIP(client)
	before := e.snapshot()
	port := strconv.Itoa(laptop(t))

	e.mustTether("intercept", "deploy/orders", "--port", "http:"+port, "--agent-idle", "3s")
	e.requireAll(client, "laptop", 5)
	uids := e.podUIDs()
	e.mustTether("leave", "deploy/orders")
	e.requireAll(client, "app", 3)
	if from := e.calledFrom(client); from != "127.0.0.1" {
		t.Errorf("within the idle time the app sees callers from %q, want the agent (127.0.0.1)", from)
	}

	// The agents step aside: the Service targets the app's port by number.
	svc := e.waitServicePort(intstr.FromInt32(8080))
	if _, ok := svc.Annotations[annotationBack]; ok {
		t.Errorf("stepped aside, the Service carries %s", annotationBack)
	}
	e.convergeFrom(client, clientIP, 5)
	aside := 0
	pods := e.agentPods()
	for _, p := range pods {
		if p.Aside {
			aside++
		}
	}
	if aside != 2 {
		t.Errorf("status shows %d agents aside, want 2: %+v", aside, pods)
	}
	if got := e.podUIDs(); !equalSets(got, uids) {
		t.Errorf("pods changed while the agents stepped aside: %v, then %v", uids, got)
	}

	// The next intercept points the Service at the agents again, ready
	// when it returns.
	// --agent-idle again: the agents in place keep theirs, and it says so.
	_, errOut, code := e.tether(agentImage("intercept", "deploy/orders", "--port", "http:"+port, "--agent-idle", "1h",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 {
		t.Fatalf("intercept after stepping aside: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "pointing service/orders at them again") {
		t.Errorf("intercept's progress does not say it points the Service at the agents again:\n%s", errOut)
	}
	if !strings.Contains(errOut, "the agent in place keeps its settings: --agent-idle") {
		t.Errorf("intercept's progress does not say --agent-idle does not apply to the agents in place:\n%s", errOut)
	}
	e.requireAll(client, "laptop", 10) // strict: ready when it returns
	e.mustTether("leave", "deploy/orders")

	// Aside again, then rolled back from there.
	e.waitServicePort(intstr.FromInt32(8080))
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)
	s, err := e.cs.CoreV1().Services(e.ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Annotations[annotationBack]; ok {
		t.Errorf("rolled back, the Service still carries %s", annotationBack)
	}
	e.convergeFrom(client, clientIP, 3)
}

// podIP is the address of the running pod name.
func (e *env) podIP(name string) string {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Status.PodIP
}

// convergeFrom waits until the app sees n requests in a row come from
// want (a hang guard, not a timing assertion).
func (e *env) convergeFrom(client, want string, n int) {
	e.t.Helper()
	var got string
	for start, streak := time.Now(), 0; time.Since(start) < 60*time.Second; time.Sleep(100 * time.Millisecond) {
		if got = e.calledFrom(client); got != want {
			streak = 0
			continue
		}
		if streak++; streak == n {
			return
		}
	}
	e.t.Fatalf("the app never saw %d requests in a row from %s within 60s; last from %s", n, want, got)
}

// podUIDs are the UIDs of the orders pods that run.
func (e *env) podUIDs() []string {
	var out []string
	for _, p := range e.runningOrders() {
		out = append(out, string(p.UID))
	}
	return out
}

// runningOrders are the orders pods of the newest template that run and
// are not going.
func (e *env) runningOrders() []corev1.Pod {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range e.newestTemplate(pods.Items) {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}

// TestRecordAfterInterceptKeepsRecording: `tether record` on a workload
// whose agent an intercept added (with a short idle time) restarts that
// agent once to record until rollback: past the intercept's idle time it
// neither pauses nor steps aside, and what callers send is recorded;
// rollback restores the workload exactly.
func TestRecordAfterInterceptKeepsRecording(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := strconv.Itoa(laptop(t))

	e.mustTether("intercept", "deploy/orders", "--port", "http:"+port, "--agent-idle", "2s")
	e.requireAll(client, "laptop", 3)
	e.mustTether("leave", "deploy/orders")
	uids := e.podUIDs()

	_, errOut, code := e.tether(agentImage("record", "deploy/orders", "--port", "http", "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 {
		t.Fatalf("record: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "restarting the agent") || !strings.Contains(errOut, "--record-idle 2s") {
		t.Errorf("record's progress does not say it restarts the intercept's agent and why:\n%s", errOut)
	}
	if got := e.podUIDs(); equalSets(got, uids) {
		t.Error("the agent was not restarted")
	}
	uids = e.podUIDs()
	// Well past the intercept's idle time (and the daemon's first look
	// after leave, 2s): the agent still records, in the Service's path.
	time.Sleep(6 * time.Second)
	e.requireAll(client, "app", 3)
	if from := e.calledFrom(client); from != "127.0.0.1" {
		t.Errorf("after the idle time the app sees callers from %q, want the agent (127.0.0.1): it stepped aside", from)
	}
	pods := e.agentPods()
	for _, p := range pods {
		if p.Aside || p.RecordingPaused || p.RecordIdle != 0 {
			t.Errorf("status: pod %s aside %v, recording paused %v, idle time %v; want recording until rollback",
				p.Pod, p.Aside, p.RecordingPaused, p.RecordIdle)
		}
	}
	if len(pods) != 1 {
		t.Errorf("status shows %d agent pods, want 1: %+v", len(pods), pods)
	}
	found := 0
	for _, r := range e.requestsList() {
		if r.Path == "/whoami" {
			found++
		}
	}
	if found == 0 {
		t.Error("requests list shows none of the /whoami requests sent after the idle time")
	}
	// The same record again restarts nothing.
	e.mustTether("record", "deploy/orders", "--port", "http")
	if got := e.podUIDs(); !equalSets(got, uids) {
		t.Errorf("the same record again replaced the pods: %v, then %v", uids, got)
	}

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}
