//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

// sessionObjects are the test's objects as a session compares them:
// spec, data, labels and annotations, server-set fields aside.
type sessionObjects struct {
	Deployment, Service, ConfigMap, Secret, NetworkPolicy string
}

func (e *env) sessionObjects() sessionObjects {
	e.t.Helper()
	ctx := context.Background()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			e.t.Fatal(err)
		}
		return string(b)
	}
	var s sessionObjects
	d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	delete(d.Annotations, "deployment.kubernetes.io/revision")
	s.Deployment = enc([]any{d.Labels, d.Annotations, d.Spec})
	svc, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Service = enc([]any{svc.Labels, svc.Annotations, svc.Spec})
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "orders-config", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.ConfigMap = enc([]any{cm.Labels, cm.Annotations, cm.Data, cm.Immutable})
	sec, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Secret = enc([]any{sec.Labels, sec.Annotations, sec.Data, sec.Type})
	np, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Get(ctx, "allow-orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	s.NetworkPolicy = enc([]any{np.Labels, np.Annotations, np.Spec})
	return s
}

// sessionSetup deploys orders (2 replicas, a preStop pause so that a pod
// leaves the endpoints before it stops listening, as a well-behaved app
// does), a ConfigMap, a Secret and a NetworkPolicy. The first pods have
// no preStop and stop at once when the edit replaces them: it waits until
// they are gone and the rules have had time to drop them, or a node whose
// kube-proxy still names one hangs the load's first request (seen on two
// nodes).
func (e *env) sessionSetup() {
	e.t.Helper()
	ctx := context.Background()
	e.deployOrders(2)
	e.editTemplate(func(tmpl *corev1.PodTemplateSpec) {
		tmpl.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}
	})
	e.waitAppRoutes(2)
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "orders-config", Labels: map[string]string{"app": "orders"}},
		Data: map[string]string{"LOG_LEVEL": "info"}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "orders-db"},
		Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-orders"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}}}}}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// sessionChanges makes the changes, as a developer would with
// kubectl: a new image reference, an env var from a new ConfigMap, an
// edited Secret, one replica, a deleted NetworkPolicy, a new Service.
func (e *env) sessionChanges() {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "debug-flags"},
		Data: map[string]string{"mode": "verbose"}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		one := int32(1)
		d.Spec.Replicas = &one
		c := &d.Spec.Template.Spec.Containers[0]
		c.Image = "tetherkube/tether-demo:dev" // the same image, named differently: the pods still run
		c.Env = append(c.Env, corev1.EnvVar{Name: "DEBUG_MODE", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "debug-flags"}, Key: "mode"}}})
		_, err = e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sec, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	sec.Data["password"] = []byte("debugging")
	if _, err := e.cs.CoreV1().Secrets(e.ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Delete(ctx, "allow-orders", metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "orders-debug"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "orders"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.waitAvailable("orders", 1)
}

// load sends requests to the orders Service from a client pod, one after
// another, until stop is called, which returns how many were sent and the
// failures. The first request still unanswered after 3 s takes a
// netSnapshot, named among the failures if there are any.
func (e *env) load(client string) (stop func() (int, []string)) {
	var done atomic.Bool
	var mu sync.Mutex
	var n int
	var failures []string
	var snapOnce sync.Once
	var snapDir string // the snapshot's folder, set in snapOnce
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			slow := time.AfterFunc(3*time.Second, func() { snapOnce.Do(func() { snapDir = e.netSnapshot() }) })
			start := time.Now()
			out, ok := e.exec(client, "/tether-demo", "get", "http://orders/healthz")
			slow.Stop()
			mu.Lock()
			n++
			if !ok || !strings.Contains(out, "200 OK") {
				failures = append(failures, fmt.Sprintf("%s (after %s): %s", start.Format("15:04:05.000"),
					time.Since(start).Round(time.Millisecond), strings.TrimSpace(out)))
			}
			mu.Unlock()
		}
	}()
	return func() (int, []string) {
		done.Store(true)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		snapOnce.Do(func() {}) // waits for a snapshot under way; takes none after
		if snapDir != "" && len(failures) > 0 {
			failures = append(failures, "a request was still unanswered after 3 s: pods, endpoints and both nodes' netfilter then in "+snapDir)
		}
		return n, failures
	}
}

type sessionDiffJSON struct {
	Changes []struct {
		Object, Change string
		Paths          []string
	}
}

func (e *env) sessionDiff() map[string]string {
	e.t.Helper()
	var d sessionDiffJSON
	if err := json.Unmarshal([]byte(e.mustTether("session", "diff", "-o", "json")), &d); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range d.Changes {
		out[c.Object] = c.Change + " " + strings.Join(c.Paths, ",")
	}
	return out
}

// TestSessionRollbackRestoresEverything is issue 14's session end to end:
// start, the developer's changes, a diff that lists exactly them, a
// rollback killed half way and run again that restores every object field
// for field and deletes the created ones while a client pod's requests
// all succeed, a refused immutable change, --force, end.
func TestSessionRollbackRestoresEverything(t *testing.T) {
	e := newEnv(t)
	e.sessionSetup()
	client := e.clientPod("client")
	before := e.sessionObjects()

	out := e.mustTether("session", "start", "incident-42")
	if !strings.Contains(out, "Session incident-42 started in "+e.ns) {
		t.Errorf("session start: %s", out)
	}
	if st := e.mustTether("status"); !strings.Contains(st, "incident-42 in "+e.ns) {
		t.Errorf("status does not show the session:\n%s", st)
	}
	// A second session: exit 2, nothing changed.
	_, stderr, code := e.tether("session", "start", "other", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 || !strings.Contains(stderr, `has a session already: "incident-42"`) {
		t.Errorf("a second session: exit %d, stderr %s", code, stderr)
	}

	e.sessionChanges()
	want := map[string]string{
		"configmap/debug-flags":      "created ",
		"secret/orders-db":           "modified data.password",
		"service/orders-debug":       "created ",
		"networkpolicy/allow-orders": "deleted ",
		"deployment/orders": "modified spec.replicas,spec.template.spec.containers[name=orders].env[name=DEBUG_MODE]," +
			"spec.template.spec.containers[name=orders].image",
	}
	got := e.sessionDiff()
	if !equality.Semantic.DeepEqual(want, got) {
		t.Errorf("session diff -o json:\n got %v\nwant %v", got, want)
	}
	if text := e.mustTether("session", "diff"); strings.Contains(text, "s3cret") || strings.Contains(text, "debugging") ||
		strings.Contains(text, "czNjcmV0") || !strings.Contains(text, "-        image: docker.io/tetherkube/tether-demo:dev") {
		t.Errorf("session diff (text) shows a secret or lacks the image line:\n%s", text)
	}

	stop := e.load(client)
	// A rollback killed once the deployment is being restored...
	e.killedRollback("update deployment/orders")
	// ...is finished by running it again.
	out = e.mustTether("session", "rollback")
	n, failures := stop()
	if !strings.Contains(out, "verified against the snapshot") {
		t.Errorf("rollback output:\n%s", out)
	}
	t.Logf("%d requests during the rollbacks", n)
	if n < 5 || len(failures) > 0 {
		t.Errorf("%d requests during the rollbacks, %d failed (want at least 5, none failed):\n%s", n, len(failures), strings.Join(failures, "\n"))
	}
	t.Logf("the second rollback:\n%s", out)
	// The first was killed before the deletes, which come after the rollout.
	if !strings.Contains(out, "delete     configmap/debug-flags") || !strings.Contains(out, "delete     service/orders-debug") {
		t.Errorf("the second rollback did not finish the first's work:\n%s", out)
	}
	ctx := context.Background()
	// The rollback waited for the rollout.
	if d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{}); err != nil || d.Status.UpdatedReplicas != 2 || d.Status.AvailableReplicas != 2 {
		t.Errorf("after the rollback: %v; deployment status %+v, want 2 updated and available replicas", err, d.Status)
	}
	if after := e.sessionObjects(); after != before {
		t.Errorf("not restored field for field:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "debug-flags", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("configmap/debug-flags, created during the session, is still there (%v)", err)
	}
	if _, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders-debug", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("service/orders-debug, created during the session, is still there (%v)", err)
	}
	if got := e.sessionDiff(); len(got) != 0 {
		t.Errorf("a diff after the rollback: %v", got)
	}

	// An immutable change: refused, exit 3, nothing changed; --force.
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "orders-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	cm.Immutable, cm.Data["LOG_LEVEL"] = &yes, "debug"
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	frozen := e.sessionObjects()
	_, stderr, code = e.tether("session", "rollback", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 3 || !strings.Contains(stderr, "configmap/orders-config: changed data, immutable") || !strings.Contains(stderr, "--force") {
		t.Errorf("rollback of an immutable change: exit %d, stderr:\n%s\nwant exit 3 naming configmap/orders-config and --force", code, stderr)
	}
	if now := e.sessionObjects(); now != frozen {
		t.Errorf("the refused rollback changed something")
	}
	e.mustTether("session", "rollback", "--force")
	if after := e.sessionObjects(); after != before {
		t.Errorf("--force did not restore:\nbefore %+v\nafter  %+v", before, after)
	}

	// A snapshot changed after the fact: refused, naming the Secret, exit 3.
	chunk, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, "tether-session-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	chunk.Data["snapshot.json.gz"] = append(chunk.Data["snapshot.json.gz"], 0)
	if _, err := e.cs.CoreV1().Secrets(e.ns).Update(ctx, chunk, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = e.tether("session", "rollback", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 3 || !strings.Contains(stderr, "secret/tether-session-0 changed after the session started") {
		t.Errorf("rollback from a tampered snapshot: exit %d, stderr %s", code, stderr)
	}

	out = e.mustTether("session", "end")
	if !strings.Contains(out, "ended: the changes stay") {
		t.Errorf("session end: %s", out)
	}
	left, err := e.cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "tether.dev/session"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) > 0 {
		t.Errorf("%d session secrets left after end", len(left.Items))
	}
	_, stderr, code = e.tether("session", "rollback", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 || !strings.Contains(stderr, "has no session") {
		t.Errorf("rollback after end: exit %d, stderr %s", code, stderr)
	}
}

// killedRollback starts `session rollback` and kills it (SIGKILL, as a
// closed laptop would) once its progress shows the line after.
func (e *env) killedRollback(after string) {
	e.t.Helper()
	cmd := exec.Command(tetherBinary(e.t), "session", "rollback", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), after) {
			break
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !strings.Contains(strings.Join(seen, "\n"), after) {
		e.t.Fatalf("the rollback never said %q:\n%s", after, strings.Join(seen, "\n"))
	}
	e.t.Logf("killed the rollback after:\n%s", strings.Join(seen, "\n"))
}

// TestSessionBadInput: an unknown namespace, and diff, rollback or end
// without a session, exit 2 and change nothing.
func TestSessionBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	count := func() int {
		l, err := e.cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	secrets := count()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "start", "-n", e.ns + "-missing"}, "does not exist"},
		{[]string{"session", "diff", "-n", e.ns}, "has no session"},
		{[]string{"session", "rollback", "-n", e.ns}, "has no session"},
		{[]string{"session", "end", "-n", e.ns}, "has no session"},
		{[]string{"session", "start", "Bad_Name", "-n", e.ns}, "session name"},
		{[]string{"session", "start", "--include", "pod/x", "-n", e.ns}, "a session covers"},
	} {
		_, stderr, code := e.tether(append(c.args, "--kubeconfig", e.kubeconfig)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("tether %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
	if n := count(); n != secrets {
		t.Errorf("%d secrets in the namespace after the refused commands, %d before", n, secrets)
	}
}

// TestSessionRollbackUndoesTethersOwnChanges: a recording tether began
// during the session is rolled back with it, as `tether rollback` does:
// the agent leaves the template, the journal and the token go. A
// recording begun before the session is part of its snapshot and stays.
func TestSessionRollbackUndoesTethersOwnChanges(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	e.mustTether("session", "start")
	e.mustTether(agentImage("record", "orders", "--port", "http")...)
	if got := e.sessionDiff(); !strings.HasPrefix(got["deployment/orders"], "modified ") {
		t.Errorf("the diff does not show the agent added to deployment/orders: %v", got)
	}
	out := e.mustTether("session", "rollback")
	if !strings.Contains(out, "(tether's deployment/orders)") {
		t.Errorf("the rollback does not report rolling back tether's recording:\n%s", out)
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)
	if got := e.sessionDiff(); len(got) != 0 {
		t.Errorf("a diff after the rollback: %v", got)
	}
	e.mustTether("session", "end")
}

// TestSessionIncludeAndAutoscaler: a session of the objects --include
// names (one absent at start) sees only them; the replica count of a
// workload its HPA scales is the HPA's, not a change; rollback recreates
// the deleted HPA and deletes the named object created meanwhile, and
// leaves what it was not told about.
func TestSessionIncludeAndAutoscaler(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	ctx := context.Background()
	one, three := int32(1), int32(3)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "orders"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: &one, MaxReplicas: three,
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "orders"}}}
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mustTether("session", "start", "--include", "deploy/orders,hpa/orders,cm/later")

	if err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns).Delete(ctx, "orders", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		two := int32(2)
		d.Spec.Replicas = &two
		_, err = e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"later", "unrelated"} {
		if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"configmap/later": "created ", "horizontalpodautoscaler/orders": "deleted "}
	if got := e.sessionDiff(); !equality.Semantic.DeepEqual(want, got) {
		t.Errorf("session diff -o json:\n got %v\nwant %v", got, want)
	}
	e.mustTether("session", "rollback")
	if _, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(e.ns).Get(ctx, "orders", metav1.GetOptions{}); err != nil {
		t.Errorf("the HPA is not back: %v", err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "later", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("configmap/later, named and created during the session, is still there (%v)", err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "unrelated", metav1.GetOptions{}); err != nil {
		t.Errorf("configmap/unrelated, not in the session, is gone: %v", err)
	}
	if got := e.sessionDiff(); len(got) != 0 {
		t.Errorf("a diff after the rollback: %v", got)
	}
}
