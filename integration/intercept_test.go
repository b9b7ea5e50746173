//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// laptop serves HTTP on loopback as the developer's process would, and
// answers with X-Served-By: laptop.
func laptop(t *testing.T) int {
	t.Helper()
	port, _ := named(t, "laptop")
	return port
}

// servedBy sends one request from the client pod to the orders Service and
// returns who answered: "laptop", "app", or what went wrong.
func (e *env) servedBy(client string) string {
	e.t.Helper()
	return e.servedByURL(client, "http://orders."+e.ns+".svc.cluster.local/whoami")
}

// servedByURL is servedBy for a request to url.
func (e *env) servedByURL(client, url string) string {
	e.t.Helper()
	out, ok := e.exec(client, "/tether-demo", "get", url)
	if !ok {
		return "failed: " + strings.TrimSpace(out)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, found := strings.CutPrefix(line, "X-Served-By: "); found {
			if strings.HasPrefix(v, "orders-") {
				return "app"
			}
			return v
		}
	}
	return "unknown: " + out
}

// converge waits until requests are served by want, n times in a row, and
// returns how long the first took. A cluster needs a moment after its
// endpoints change before kube-proxy routes by them; this bounds that wait
// (a hang guard, not a timing assertion).
func (e *env) converge(client, want string, n int) time.Duration {
	e.t.Helper()
	start := time.Now()
	var first time.Duration
	var got string
	for streak := 0; time.Since(start) < 60*time.Second; time.Sleep(100 * time.Millisecond) {
		if got = e.servedBy(client); got != want {
			streak = 0
			continue
		}
		if streak == 0 && first == 0 {
			first = time.Since(start)
		}
		if streak++; streak == n {
			return first
		}
	}
	e.t.Fatalf("requests never served by %s %d times in a row within 60s; last: %s", want, n, got)
	return 0
}

// requireAll sends n requests and requires every one served by want.
func (e *env) requireAll(client, want string, n int) {
	e.t.Helper()
	for i := range n {
		if got := e.servedBy(client); got != want {
			e.t.Errorf("request %d of %d served by %q, want %s", i+1, n, got, want)
		}
	}
}

// snapshot is what rollback must restore: the template, the rollout
// settings (a pinned rollout changes them), and the Service's ports and
// selector.
type snapshot struct {
	template corev1.PodTemplateSpec
	settings rolloutSettings
	ports    []corev1.ServicePort
	selector map[string]string
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := context.Background()
	d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return snapshot{template: d.Spec.Template, ports: s.Spec.Ports, selector: s.Spec.Selector,
		settings: rolloutSettings{d.Spec.Strategy, d.Spec.MinReadySeconds, d.Spec.ProgressDeadlineSeconds}}
}

// rolloutSettings are a Deployment's fields that say how it rolls out.
type rolloutSettings struct {
	Strategy         appsv1.DeploymentStrategy
	MinReady         int32
	ProgressDeadline *int32
}

// settledDiff says how after's rollout settings and Service selector
// differ from before's.
func settledDiff(before, after snapshot) string {
	var diffs []string
	if !equality.Semantic.DeepEqual(before.settings, after.settings) {
		diffs = append(diffs, fmt.Sprintf("rollout settings %+v, want %+v", after.settings, before.settings))
	}
	if !equality.Semantic.DeepEqual(before.selector, after.selector) {
		diffs = append(diffs, fmt.Sprintf("service selector %v, want %v", after.selector, before.selector))
	}
	return strings.Join(diffs, "; ")
}

// requireRestored checks the workload equals before and nothing of tether
// remains in the namespace.
func (e *env) requireRestored(before snapshot) {
	e.t.Helper()
	after := e.snapshot()
	if !equality.Semantic.DeepEqual(before.template, after.template) {
		e.t.Errorf("pod template not restored field for field:\nbefore %+v\nafter  %+v", before.template, after.template)
	}
	if !equality.Semantic.DeepEqual(before.ports, after.ports) {
		e.t.Errorf("service ports not restored: before %+v after %+v", before.ports, after.ports)
	}
	if d := settledDiff(before, after); d != "" {
		e.t.Error(d)
	}
	ctx := context.Background()
	cms, _ := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "tether.dev/journal=true"})
	if len(cms.Items) != 0 {
		e.t.Errorf("journal entries remain: %d", len(cms.Items))
	}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, "tether-agent-deployment-orders", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		e.t.Errorf("agent token secret remains (err %v)", err)
	}
}

// waitAppRoutes waits until the orders Service routes to exactly replicas
// ready pods, none running the agent (after a rollback's rollout).
func (e *env) waitAppRoutes(replicas int) {
	e.t.Helper()
	e.waitSettled(replicas, func(p *corev1.Pod) bool {
		return !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "tether-agent" })
	})
	// kube-proxy applies endpoint changes up to about a second later; tether
	// intercept waits the same (intercept.ProxySettle).
	time.Sleep(2 * time.Second)
}

// waitSettled waits until deploy/orders has no rollout under way: its
// replicas all updated and available, no other pod of it left (not even
// terminating: once one is gone, a node whose rules still name it sends
// connections to an address nobody answers), each accepted by ok (nil:
// any), and its Service's ready endpoints exactly those pods.
func (e *env) waitSettled(replicas int, ok func(*corev1.Pod) bool) {
	e.t.Helper()
	e.waitAvailable("orders", int32(replicas))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil || len(pods.Items) != replicas {
			return false, nil
		}
		names := map[string]bool{}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil || ok != nil && !ok(p) {
				return false, nil
			}
			names[p.Name] = true
		}
		eps, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=orders"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, s := range eps.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
					continue
				}
				if ep.TargetRef == nil || !names[ep.TargetRef.Name] {
					return false, nil
				}
				ready++
			}
		}
		return ready == replicas, nil
	})
	if err != nil {
		e.t.Fatalf("deploy/orders did not settle on %d pods its Service routes to: %v", replicas, err)
	}
}

func (e *env) mustTether(args ...string) string {
	e.t.Helper()
	if len(args) > 0 && (args[0] == "intercept" || args[0] == "record") && !slices.Contains(args, "--agent-image") {
		args = agentImage(args...) // this tree's agent when TETHER_AGENT_IMAGE names it
	}
	args = append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)
	out, errOut, code := e.tether(args...)
	if code != 0 {
		e.t.Fatalf("tether %s exited %d:\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestInterceptLeaveRollback is tether's main job end to end: a client
// pod's requests to the Service are answered by a server in this test
// process; after leave the app answers at once; rollback restores the
// workload field for field and removes everything tether added.
func TestInterceptLeaveRollback(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)

	out := e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))
	if !strings.Contains(out, "Intercepting deployment/orders") {
		t.Errorf("intercept output: %s", out)
	}
	// Strict: tether waited for the endpoints and kube-proxy already.
	e.requireAll(client, "laptop", 10)

	var st struct {
		Connected bool
		Daemon    struct {
			Intercepts []struct {
				Name      string
				LocalPort int
				Pods      []string
			}
		}
	}
	if err := json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Connected || len(st.Daemon.Intercepts) != 1 || st.Daemon.Intercepts[0].LocalPort != port || len(st.Daemon.Intercepts[0].Pods) != 1 {
		t.Errorf("status = %+v", st)
	}

	// Leave changes nothing in the cluster: the agent passes traffic to the
	// app from the next connection on.
	e.mustTether("leave", "deploy/orders")
	e.requireAll(client, "app", 5)

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
	e.converge(client, "app", 3)
	e.requireAll(client, "app", 5)
}

// TestDaemonKilledFallsBackToApp: kill -9 of the daemon during an intercept
// sends traffic back to the app, and a fresh daemon rolls back.
func TestDaemonKilledFallsBackToApp(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(port))
	e.requireAll(client, "laptop", 3)
	var st struct{ Daemon struct{ PID int } }
	json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st)
	if st.Daemon.PID <= 0 {
		t.Fatalf("no daemon pid in status")
	}
	if err := syscall.Kill(st.Daemon.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The agent notices the dead tunnel by keepalive (within 2 s by design).
	t.Logf("served by the app again %s after kill -9 of the daemon", e.converge(client, "app", 1))
	e.requireAll(client, "app", 5)

	e.mustTether("rollback", "orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestInterceptEveryReplica: with 3 replicas every request reaches the
// laptop, whichever pod the Service picked.
func TestInterceptEveryReplica(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(3)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	out := e.mustTether("intercept", "deploy/orders", "--port", "80:"+strconv.Itoa(port), "-o", "json")
	var info struct{ Pods []string }
	json.Unmarshal([]byte(out), &info)
	if len(info.Pods) != 3 {
		t.Errorf("intercept covers pods %v, want 3", info.Pods)
	}
	// Each request is a new connection; kube-proxy picks a pod at random.
	e.requireAll(client, "laptop", 30)

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(3)
	e.requireRestored(before)
}

// TestInterceptNumericTargetPortAndScaling: a Service whose targetPort is a
// number is pointed at the agent (and restored by rollback); pods added
// while intercepting are covered too.
func TestInterceptNumericTargetPortAndScaling(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Ports[0].TargetPort = intstr.FromInt32(8080)
		_, err = e.cs.CoreV1().Services(e.ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	e.mustTether("intercept", "orders", "--port", "80:"+strconv.Itoa(port))
	if got := e.snapshot().ports[0].TargetPort; got == intstr.FromInt32(8080) {
		t.Errorf("service targetPort still %v; want it pointed at the agent", got)
	}
	e.requireAll(client, "laptop", 5)

	// Scale up: the daemon follows the new pods and intercepts them too.
	scale, err := e.cs.AppsV1().Deployments(e.ns).GetScale(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := e.cs.AppsV1().Deployments(e.ns).UpdateScale(ctx, "orders", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("orders", 3)
	var st struct {
		Daemon struct{ Intercepts []struct{ Pods []string } }
	}
	for start := time.Now(); ; time.Sleep(300 * time.Millisecond) {
		json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st)
		if len(st.Daemon.Intercepts) == 1 && len(st.Daemon.Intercepts[0].Pods) == 3 {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("the intercept never covered the 3 pods: %+v", st)
		}
	}
	e.converge(client, "laptop", 3) // kube-proxy picks up the new endpoints
	e.requireAll(client, "laptop", 20)

	e.mustTether("rollback", "orders")
	e.waitAppRoutes(3)
	after := e.snapshot()
	if !equality.Semantic.DeepEqual(before.ports, after.ports) {
		t.Errorf("service ports not restored: before %+v after %+v", before.ports, after.ports)
	}
	if !equality.Semantic.DeepEqual(before.template, after.template) {
		t.Errorf("pod template not restored")
	}
}

// TestReinterceptKeptTunnels: leave keeps the daemon's tunnels to the
// agents, holding no intercept (the app answers at once, status says they
// are kept); the next intercept is served by the laptop as soon as it
// returns, over those tunnels; rollback closes them.
func TestReinterceptKeptTunnels(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	intercept := func() {
		t.Helper()
		e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))
		e.requireAll(client, "laptop", 10) // strict: ready when it returns
	}
	type agentPods struct {
		Daemon struct {
			Agents []struct {
				Namespace string
				Pods      []struct {
					Pod        string
					TunnelKept bool
				}
			}
		}
	}
	kept := func() (n int) {
		t.Helper()
		var st agentPods
		if err := json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		for _, a := range st.Daemon.Agents {
			if a.Namespace != e.ns {
				continue
			}
			for _, p := range a.Pods {
				if p.TunnelKept {
					n++
				}
			}
		}
		return n
	}

	intercept()
	if n := kept(); n != 0 {
		t.Errorf("while intercepting: %d tunnels kept, want 0", n)
	}
	e.mustTether("leave", "deploy/orders")
	e.requireAll(client, "app", 10) // a kept tunnel holds no intercept
	if n := kept(); n != 2 {
		t.Errorf("after leave: %d tunnels kept, want 2", n)
	}
	for range 3 {
		intercept()
		e.mustTether("leave", "deploy/orders")
		e.requireAll(client, "app", 5)
	}

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)
	e.converge(client, "app", 3)
	e.requireAll(client, "app", 5)
}
