//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tetherkube/tether/daemon"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// interceptTimed runs tether intercept, logging each progress line with
// the time since the command started, and returns how long it took and
// its stderr.
func (e *env) interceptTimed(args ...string) (time.Duration, string) {
	e.t.Helper()
	args = append(agentImage(append([]string{"intercept"}, args...)...), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	cmd := exec.Command(tetherBinary(e.t), args...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		e.t.Logf("%6d ms  %s", time.Since(start).Milliseconds(), sc.Text())
		all.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("tether %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), all.String())
	}
	return took, all.String()
}

// servedFromNode sends n requests to addr from this process, each on a
// new connection, and counts who served them. The test runs on the node:
// its connections to a ClusterIP take the same kube-proxy rules as a pod's
// on this node.
func servedFromNode(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	got := map[string]int{}
	for range n {
		resp, err := client.Get("http://" + addr + "/whoami")
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		by := resp.Header.Get("X-Served-By")
		if strings.HasPrefix(by, "orders-") {
			by = "app"
		}
		got[by]++
	}
	return got
}

// TestInterceptReadyWhenServed: tether intercept returns only once the
// Service sends every new connection to the laptop: requests sent the
// moment it returns, each on a new connection (from the node, and a burst
// from a pod), all reach the laptop, over two replicas; the agents
// confirmed it (no fixed wait). The same after leave and intercept again,
// which changes nothing in the cluster.
func TestInterceptReadyWhenServed(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(2)
	client := e.clientPod("client")
	port, _ := named(t, "laptop")
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	url := "http://orders." + e.ns + ".svc.cluster.local/whoami"

	for _, round := range []string{"first intercept", "re-intercept"} {
		took, progress := e.interceptTimed("deploy/orders", "--port", "http:"+strconv.Itoa(port))
		got := servedFromNode(t, addr, 200)
		if diff := cmp.Diff(map[string]int{"laptop": 200}, got); diff != "" {
			t.Errorf("%s: requests from the node right after intercept returned (-want +got):\n%s", round, diff)
		}
		out, ok := e.exec(client, "/tether-demo", "parallel", url, "50")
		if !ok || !strings.Contains(out, "ok 50 of 50 served-by map[laptop:50]") {
			t.Errorf("%s: 50 requests at once from a pod: %s", round, out)
		}
		switch round {
		case "first intercept":
			// From every node that runs one of the pods (one or two on the
			// local cluster, depending on NODES and the scheduler).
			if want := fmt.Sprintf("reaches the agents of 2 pods from %d nodes", e.ordersNodeCount()); !strings.Contains(progress, want) {
				t.Errorf("the agents did not confirm readiness (want %q); progress:\n%s", want, progress)
			}
			if strings.Contains(progress, "letting the nodes apply") || strings.Contains(progress, "warning") {
				t.Errorf("a fixed wait or a warning; progress:\n%s", progress)
			}
		case "re-intercept":
			if !strings.Contains(progress, "already runs the agent") {
				t.Errorf("the re-intercept changed the cluster; progress:\n%s", progress)
			}
		}
		t.Logf("%s: tether intercept took %s", round, took)
		for _, p := range e.agentPods() {
			if !p.IdleSince.IsZero() || p.Error != "" {
				t.Errorf("%s: status shows pod %s idle since %v (%s), want intercepted", round, p.Pod, p.IdleSince, p.Error)
			}
		}
		e.mustTether("leave", "deploy/orders")
	}
	// Left: each agent is idle and records until its idle time is up.
	pods := e.agentPods()
	if len(pods) != 2 {
		t.Errorf("status lists the agents of %d pods, want 2", len(pods))
	}
	for _, p := range pods {
		if p.IdleSince.IsZero() || p.RecordingPaused || p.RecordIdle != 30*time.Minute {
			t.Errorf("after leave, status shows pod %s: %+v; want idle, recording for 30m", p.Pod, p)
		}
	}
}

// agentPods returns what status says of deploy/orders' agents.
func (e *env) agentPods() []daemon.AgentPod {
	e.t.Helper()
	var st struct {
		Daemon struct{ Agents []daemon.AgentInfo }
	}
	if err := json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st); err != nil {
		e.t.Fatal(err)
	}
	for _, a := range st.Daemon.Agents {
		if a.Namespace == e.ns && a.Workload == "deployment/orders" {
			return a.Pods
		}
	}
	e.t.Fatalf("status lists no agent of deployment/orders: %+v", st.Daemon.Agents)
	return nil
}

// TestInterceptReadyProbeBlocked: a NetworkPolicy admits only the client
// pod to the orders pods, so the agents' probe (sent from the orders pods
// themselves) cannot reach the Service. The intercept still goes on, with
// a warning that says what the probe saw, and the client is served by the
// laptop.
//
// k3s's policy controller applies a policy to a new pod a moment after the
// pod starts, and a first intercept's probe may come before that. So the
// agents are added first (an intercept, then leave), the policy is waited
// for on those pods, and the probe runs when the next intercept points
// the Service at them again after they stepped aside (aside.go).
func TestInterceptReadyProbeBlocked(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPodOn("client", "", map[string]string{"role": "client"})
	outsider := e.clientPod("outsider")
	port, _ := named(t, "laptop")
	local := "http:" + strconv.Itoa(port)
	e.mustTether("intercept", "deploy/orders", "--port", local, "--agent-idle", "2s")
	e.mustTether("leave", "deploy/orders")

	onlyClient := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-from-client-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}}}},
		},
	}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(context.Background(), onlyClient, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, pod := range e.ordersPodNames() {
		e.waitBlocked(outsider, "http://"+net.JoinHostPort(e.podIP(pod), "8080")+"/whoami")
	}
	e.waitServicePort(intstr.FromInt32(8080)) // the agents stepped aside

	took, progress := e.interceptTimed("deploy/orders", "--port", local)
	t.Logf("tether intercept took %s", took)
	if !strings.Contains(progress, "pointing service/orders at them again") {
		t.Errorf("the intercept did not point the Service at the agents again; progress:\n%s", progress)
	}
	if !strings.Contains(progress, "warning: could not confirm that service/orders port 80 reaches the agents") {
		t.Errorf("no warning about the blocked probe; progress:\n%s", progress)
	}
	e.requireAll(client, "laptop", 10)
}

// ordersPodNames are the names of the orders pods that run.
func (e *env) ordersPodNames() []string {
	var out []string
	for _, p := range e.runningOrders() {
		out = append(out, p.Name)
	}
	return out
}

// waitBlocked waits until a GET of url from pod fails: a NetworkPolicy
// is in force (a hang guard of 30 s, not a timing assertion).
func (e *env) waitBlocked(pod, url string) {
	e.t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(300 * time.Millisecond) {
		if _, ok := e.exec(pod, "/tether-demo", "get", url); !ok {
			return
		}
	}
	e.t.Fatalf("a GET of %s from pod %s still succeeds after 30s: the NetworkPolicy is not in force", url, pod)
}

// ordersNodeCount returns on how many nodes the orders pods run.
func (e *env) ordersNodeCount() int {
	e.t.Helper()
	nodes := map[string]bool{}
	for _, p := range e.runningOrders() {
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = true
		}
	}
	return len(nodes)
}
