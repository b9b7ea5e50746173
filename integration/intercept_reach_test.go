//go:build integration

package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// quota creates a ResourceQuota covering CPU and memory requests and
// limits, once orders' containers declare all four (a quota refuses pods
// that do not), and waits until the quota controller has counted them.
func (e *env) quota(limitsMemory string) {
	e.t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = resource.MustParse("100m")
		_, err = e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitAvailable("orders", 1)
	e.waitAppRoutes(1)
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "compute"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceRequestsCPU: resource.MustParse("2"), corev1.ResourceRequestsMemory: resource.MustParse("1Gi"),
			corev1.ResourceLimitsCPU: resource.MustParse("4"), corev1.ResourceLimitsMemory: resource.MustParse(limitsMemory),
		}},
	}
	if _, err := e.cs.CoreV1().ResourceQuotas(e.ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		q, err := e.cs.CoreV1().ResourceQuotas(e.ns).Get(ctx, "compute", metav1.GetOptions{})
		if used := q.Status.Used[corev1.ResourceLimitsMemory]; err == nil && !used.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("quota compute never counted the orders pod: %+v", q.Status)
		}
	}
}

// TestInterceptUnderResourceQuota: in a namespace whose ResourceQuota
// covers CPU and memory, the agent's pods are admitted (the agent declares
// requests and limits) and the intercept works. Before, the ReplicaSet could
// not create a single pod ("must specify limits.cpu ...") and intercept
// waited out its timeout.
func TestInterceptUnderResourceQuota(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client") // before the quota: it declares no resources
	e.quota("1Gi")
	before := e.snapshot()
	e.mustTether(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)))...)
	e.requireAll(client, "laptop", 5)
	e.mustTether("rollback", "orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestInterceptQuotaTooSmallFailsFast: a quota with no room for the agent
// fails the intercept with the quota's message and what to do, well before
// the rollout timeout, and rolls back.
func TestInterceptQuotaTooSmallFailsFast(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	// orders is limited to 64Mi; the new pod with the agent needs 64Mi +
	// 128Mi while the old one still runs: 256Mi > 200Mi.
	e.quota("200Mi")
	before := e.snapshot()
	start := time.Now()
	_, stderr, code := e.tether(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)),
		"--rollout-timeout", "100s", "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	t.Logf("intercept failed after %s:\n%s", time.Since(start).Round(time.Second), stderr)
	if code != 2 {
		t.Errorf("exit code %d, want 2 (user error)", code)
	}
	for _, want := range []string{"ResourceQuota has no room", "exceeded quota: compute", "limits.memory", "undoing this attempt's changes to deployment/orders"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q", want)
		}
	}
	if strings.Contains(stderr, "deadline exceeded") || strings.Contains(stderr, "after 1m40s") {
		t.Errorf("intercept waited out its rollout timeout instead of saying why")
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestInterceptHeadlessServiceRefused: callers of a headless Service
// connect to the pods' IPs on the app's port, which the agent does not
// take over; tether once reported such an intercept as running while no
// request reached the laptop. It is refused, and nothing changes.
func TestInterceptHeadlessServiceRefused(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	ctx := context.Background()
	svc, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cs.CoreV1().Services(e.ns).Delete(ctx, "orders", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Labels: svc.Labels},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: svc.Spec.Selector, Ports: svc.Spec.Ports},
	}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	client := e.clientPod("client")
	before := e.snapshot()
	_, stderr, code := e.tether(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)),
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 2 {
		t.Errorf("exit code %d, want 2 (user error); stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"service orders is headless (clusterIP: None)", "Service with a cluster IP"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	e.requireRestored(before)
	// The app still answers its callers directly.
	out, ok := e.exec(client, "/tether-demo", "get", "http://orders."+e.ns+".svc.cluster.local:8080/whoami")
	if !ok || !strings.Contains(out, "X-Served-By: orders-") {
		t.Errorf("the headless Service's callers no longer reach the app: %s", out)
	}
}

// TestInterceptSharedServiceRefused: service orders also selects the pods
// of deployment orders-canary (their labels match orders' selector too,
// as overlapping selectors do): those pods would get no agent and keep
// part of the traffic, so the intercept is refused and nothing changes.
func TestInterceptSharedServiceRefused(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	ctx := context.Background()
	tmpl := podTemplate("orders")
	tmpl.Labels["track"] = "canary"
	canary := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-canary"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders", "track": "canary"}},
			Template: tmpl,
		},
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, canary, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("orders-canary", 1)
	before := e.snapshot()
	_, stderr, code := e.tether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(laptop(t)),
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 2 {
		t.Errorf("exit code %d, want 2 (user error); stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"service orders also selects pod/orders-canary-", "(of replicaset/orders-canary-", "which deployment/orders does not manage"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	e.requireRestored(before)
}

// TestInterceptPinnedRolloutFallsBack: a pinned rollout starts every new
// pod beside the running ones; when a quota leaves room for the
// Deployment's own surge (one pod) but not for that, the intercept says
// so, sets the Service and the Deployment back and rolls out as
// configured, and works; rollback is exact. Without the quota the same
// Deployment's intercept is pinned (the switch is in its progress).
func TestInterceptPinnedRolloutFallsBack(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(2)
	client := e.clientPod("client")
	ctx := context.Background()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	room := int64(len(pods.Items) + 1)
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(room, resource.DecimalSI)}}}
	if _, err := e.cs.CoreV1().ResourceQuotas(e.ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		q, err := e.cs.CoreV1().ResourceQuotas(e.ns).Get(ctx, "pods", metav1.GetOptions{})
		if used := q.Status.Used[corev1.ResourcePods]; err == nil && used.Value() == room-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quota pods never counted the namespace's %d pods: %+v", room-1, q.Status)
		}
	}
	before := e.snapshot()
	took, progress := e.interceptTimed("orders", "--port", "http:"+strconv.Itoa(laptop(t)))
	t.Logf("intercept with a quota of %d pods: %s", room, took.Round(time.Millisecond))
	for _, want := range []string{"holding service/orders to the running pods", "exceeded quota: pods",
		"rolling out as deployment/orders is configured instead"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress does not say %q", want)
		}
	}
	if strings.Contains(progress, "switching service/orders") {
		t.Errorf("the Service was switched after the fallback")
	}
	e.requireAll(client, "laptop", 10)
	e.mustTether("rollback", "orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)

	// Room for every new pod: pinned, switched once.
	if err := e.cs.CoreV1().ResourceQuotas(e.ns).Delete(ctx, "pods", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, progress = e.interceptTimed("orders", "--port", "http:"+strconv.Itoa(laptop(t)))
	if !strings.Contains(progress, "switching service/orders to the new pods") || strings.Contains(progress, "instead") {
		t.Errorf("without the quota, the intercept was not pinned:\n%s", progress)
	}
	e.requireAll(client, "laptop", 10)
	e.mustTether("rollback", "orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)
}
