//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/integration/cluster"
)

// interceptPaths reads `tether status -o json`: the path of each pod's
// tunnel of the one intercept.
func (e *env) interceptPaths() map[string]string {
	e.t.Helper()
	var st struct {
		Daemon struct {
			Intercepts []struct {
				Pods  []string
				Paths map[string]string
			}
		}
	}
	out := e.mustTether("status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(st.Daemon.Intercepts) != 1 {
		e.t.Fatalf("status shows %d intercepts, want 1:\n%s", len(st.Daemon.Intercepts), out)
	}
	ic := st.Daemon.Intercepts[0]
	if len(ic.Paths) != len(ic.Pods) {
		e.t.Errorf("status: paths %v for pods %v", ic.Paths, ic.Pods)
	}
	return ic.Paths
}

// wantPaths requires every pod's tunnel on path.
func (e *env) wantPaths(path string) {
	e.t.Helper()
	paths := e.interceptPaths()
	if len(paths) == 0 {
		e.t.Fatalf("status shows no pod")
	}
	for pod, got := range paths {
		if got != path {
			e.t.Errorf("pod %s: path %q, want %s", pod, got, path)
		}
	}
}

// blockEgressToLaptop denies the orders pods every egress but DNS, as a
// NetworkPolicy on the workload's egress would: the agent can no longer
// open a connection to this machine.
func (e *env) blockEgressToLaptop() {
	e.t.Helper()
	dns := intstr.FromInt32(53)
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-egress-dns-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}}},
		},
	}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(context.Background(), deny, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitEgressBlocked waits until pod's app container cannot open a
// connection to this machine's address on the pods' bridge (a hang
// guard, not a timing assertion).
func (e *env) waitEgressBlocked(pod string) {
	e.t.Helper()
	cfg := cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster"))
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.NodePodCIDR.Addr().Next().String(), "0"))
	if err != nil {
		e.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "reached\n") })}
	go srv.Serve(l)
	defer srv.Close()
	url := "http://" + l.Addr().String() + "/"
	for start := time.Now(); time.Since(start) < 60*time.Second; time.Sleep(500 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := cluster.ExecIn(ctx, e.rc, e.ns, pod, "orders", "/tether-demo", "get", url)
		cancel()
		if err != nil && !strings.Contains(out, "reached") {
			return
		}
	}
	e.t.Fatalf("pod %s still reaches %s 60s after the NetworkPolicy was created", pod, url)
}

// blockDirectOnHost rejects every connection a pod opens to this machine's
// address on the pods' bridge (where the daemon's direct listener is), as
// a host firewall would, until the test ends. Unlike a NetworkPolicy, it
// holds for a pod from its first packet: the cluster's policy controller
// programs a new pod's rules a moment after it starts, and in that moment
// a rollout's new agent may still reach the laptop.
func (e *env) blockDirectOnHost() {
	e.t.Helper()
	cfg := cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster"))
	rule := []string{"INPUT", "-s", cfg.PodCIDR.String(), "-d", cfg.NodePodCIDR.Addr().Next().String(), "-p", "tcp", "--syn",
		"-m", "comment", "--comment", "tether-it: no direct path", "-j", "REJECT", "--reject-with", "tcp-reset"}
	if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
		e.t.Fatalf("iptables -I %v: %v\n%s", rule, err, out)
	}
	e.t.Cleanup(func() {
		if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			e.t.Errorf("iptables -D %v: %v\n%s", rule, err, out)
		}
	})
}

// TestInterceptDirectPath: on the local cluster the pods reach this
// machine, so `--path auto` takes the direct path; status says so, and
// the in-cluster client's requests reach the laptop.
func TestInterceptDirectPath(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	port := laptop(t)
	out := e.mustTether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))...)
	if !strings.Contains(out, "(direct)") {
		t.Errorf("intercept output does not name the path:\n%s", out)
	}
	e.wantPaths("direct")
	e.requireAll(client, "laptop", 20)
	e.mustTether("leave", "deploy/orders")
	e.requireAll(client, "app", 3)

	// kill -9 of the daemon ends both tunnels: the app serves again.
	e.mustTether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))...)
	e.wantPaths("direct")
	e.requireAll(client, "laptop", 3)
	var st struct{ Daemon struct{ PID int } }
	json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st)
	if st.Daemon.PID <= 0 {
		t.Fatalf("no daemon pid in status")
	}
	if err := syscall.Kill(st.Daemon.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Each agent notices its own tunnels end (the direct one at once, the
	// port-forward within 2 s): 10 in a row covers both pods.
	t.Logf("served by the app again %s after kill -9 of the daemon", e.converge(client, "app", 10))
	e.requireAll(client, "app", 5)
}

// TestInterceptPathBlocked: with the agent's egress to this machine
// denied by a NetworkPolicy, --path direct fails with a user error (exit
// 2) and leaves nothing in the cluster; with connections to this machine
// refused by a host firewall rule, auto falls back to the port-forward and
// serves the same requests.
func TestInterceptPathBlocked(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	port := laptop(t)
	before := e.snapshot()
	// The agent in place first (record opens no tunnel), then the policy,
	// waited for until it holds for that pod: the policy controller
	// programs a pod's rules a moment after the pod (or the policy)
	// appears, a connection made in that moment stays allowed, and an
	// intercept's new agent connects to the laptop within it.
	e.mustTether("record", "deploy/orders", "--port", "http")
	e.blockEgressToLaptop()
	e.waitEgressBlocked(e.firstPod("orders"))
	recording := e.snapshot()

	// --path direct: nothing of the intercept may remain.
	out, errOut, code := e.tether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port), "--path", "direct",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	t.Logf("intercept --path direct with egress blocked: exit %d\n%s", code, errOut)
	if code != 2 || !strings.Contains(errOut, "--path direct: the pod") || !strings.Contains(errOut, "--path port-forward") {
		t.Fatalf("intercept --path direct with egress blocked: exit %d, want 2 with the reason\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if now := e.snapshot(); !equality.Semantic.DeepEqual(recording.template, now.template) || !equality.Semantic.DeepEqual(recording.ports, now.ports) {
		t.Errorf("the failed intercept changed the workload or the Service:\nbefore %+v\nafter  %+v", recording, now)
	}
	e.requireAll(client, "app", 3)
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)

	// auto: the port-forward carries the same requests. The host rule, not
	// the policy, makes this certain: the rollout's new pod may reach the
	// laptop before the policy controller has its rules (CI saw auto take
	// the direct path here, rightly: it worked when tried).
	e.blockDirectOnHost()
	e.mustTether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))...)
	e.wantPaths("port-forward")
	e.requireAll(client, "laptop", 20)
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestRunPaths: `tether run` reaches the cluster the same over either
// path, and says which one it took.
func TestRunPaths(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), e.firstPod("orders"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"direct", "port-forward"} {
		t.Run(path, func(t *testing.T) {
			e.runReachesCluster(pod, svc, []string{"--path", path}, path)
		})
	}
}
