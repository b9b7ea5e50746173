//go:build integration

// Package integration tests tether against the real local k3s cluster
// (`make cluster-up`). A missing or unhealthy cluster fails the tests: it is
// never a reason to skip.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/integration/cluster"
)

// env is one test's view of the cluster: clients and a namespace of its own.
type env struct {
	t          *testing.T
	kubeconfig string
	rc         *rest.Config
	cs         *kubernetes.Clientset
	ns         string
	// runtimeDir is this test's XDG_RUNTIME_DIR: its own tether daemon.
	runtimeDir string
}

// repoRoot returns the repository root, from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// kubeconfigPath is $KUBECONFIG when set, else the local cluster's.
func kubeconfigPath() string {
	if p := os.Getenv("KUBECONFIG"); p != "" {
		return p
	}
	return cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster")).KubeconfigPath()
}

// newEnv connects to the cluster and creates a namespace that is deleted
// when the test ends. The namespace enforces the restricted Pod Security
// Standard, as many production namespaces do.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLevel(t, "restricted")
}

// newEnvLevel is newEnv with the namespace's Pod Security level.
func newEnvLevel(t *testing.T, level string) *env {
	t.Helper()
	kc := kubeconfigPath()
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatalf("no cluster to test against (kubeconfig %s): %v; run `make cluster-up`", kc, err)
	}
	rc.QPS, rc.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		t.Fatalf("cluster at %s does not answer: %v; run `make cluster-up`", rc.Host, err)
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	ns := fmt.Sprintf("it-%s-%s", strings.Trim(name, "-"), hex.EncodeToString(suffix))
	ctx := context.Background()
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": level, "tether.dev/test": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, cs, ns)
		}
		err := cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	runtimeDir, err := os.MkdirTemp("", "tt")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, kubeconfig: kc, rc: rc, cs: cs, ns: ns, runtimeDir: runtimeDir}
	t.Cleanup(func() {
		// Stop this test's daemon (if it started one) before the namespace goes.
		runBinary(t, tetherBinary(t), e.tetherEnv(), "quit", "--kubeconfig", kc)
		if keep := os.Getenv("TETHER_IT_KEEP"); keep != "" {
			// The daemon's folder, its log included, for a look afterwards.
			dst := filepath.Join(keep, strings.NewReplacer("/", "-").Replace(t.Name()))
			os.RemoveAll(dst)
			if err := os.Rename(runtimeDir, dst); err == nil {
				t.Logf("the daemon's folder (its log included) kept in %s", dst)
				return
			}
		}
		os.RemoveAll(runtimeDir)
	})
	return e
}

// tetherEnv is the environment tether runs in for this test.
func (e *env) tetherEnv() []string {
	return []string{"XDG_RUNTIME_DIR=" + e.runtimeDir, "KUBECONFIG=" + e.kubeconfig}
}

// dumpNamespace writes the pods and events of a failed test's namespace to
// a file and logs its path with at most a few warning events: the test's
// own failure lines must stay the last ones before its "--- FAIL" (CI
// shows only a few lines there).
func dumpNamespace(t *testing.T, cs *kubernetes.Clientset, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: phase %s, conditions %v\n", p.Name, p.Status.Phase, p.Status.Conditions)
		for _, c := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  container %s: ready %v state %+v\n", c.Name, c.Ready, c.State)
		}
		for _, c := range p.Status.EphemeralContainerStatuses {
			fmt.Fprintf(&b, "  ephemeral container %s: state %+v\n", c.Name, c.State)
		}
	}
	var warnings []string
	events, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	for _, e := range events.Items {
		at := e.LastTimestamp.Time
		if at.IsZero() {
			at = e.EventTime.Time
		}
		line := fmt.Sprintf("event %s %s %s %s: %s", at.UTC().Format("15:04:05"), e.Type, e.InvolvedObject.Name, e.Reason, e.Message)
		fmt.Fprintln(&b, line)
		if e.Type == corev1.EventTypeWarning {
			warnings = append(warnings, line)
		}
	}
	dir := filepath.Join(os.TempDir(), "tether-it-dumps")
	path := filepath.Join(dir, ns+".txt")
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, []byte(b.String()), 0o644)
	}
	if err != nil {
		t.Logf("namespace %s (not written to a file: %v):\n%s", ns, err, b.String())
		return
	}
	if len(warnings) > 3 {
		warnings = warnings[len(warnings)-3:]
	}
	t.Logf("namespace %s: %d pods, %d events, written to %s; last warnings: %q", ns, len(pods.Items), len(events.Items), path, warnings)
}

// deployOrders applies integration/manifests/orders.yaml in the test's
// namespace with the given replica count and waits until every replica is
// available.
func (e *env) deployOrders(replicas int32) (*appsv1.Deployment, *corev1.Service) {
	e.t.Helper()
	return e.deployOrdersWith(replicas, nil)
}

// deployOrdersWith is deployOrders with the Deployment changed by edit
// (when not nil) before it is created.
func (e *env) deployOrdersWith(replicas int32, edit func(*appsv1.Deployment)) (*appsv1.Deployment, *corev1.Service) {
	e.t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "integration", "manifests", "orders.yaml"))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	var dep *appsv1.Deployment
	var svc *corev1.Service
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			e.t.Fatalf("decode orders.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			o.Spec.Replicas = &replicas
			if edit != nil {
				edit(o)
			}
			if dep, err = e.cs.AppsV1().Deployments(e.ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				e.t.Fatalf("create deployment: %v", err)
			}
		case *corev1.Service:
			if svc, err = e.cs.CoreV1().Services(e.ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				e.t.Fatalf("create service: %v", err)
			}
		}
	}
	e.waitAvailable(dep.Name, replicas)
	e.waitServed(svc)
	return dep, svc
}

// waitServed waits until a caller of the Service is served: available pods
// are not enough on a cluster that just started, where kube-proxy may not
// have programmed the Service yet (its callers are refused until it has).
// The test runs on the node, which reaches ClusterIPs.
func (e *env) waitServed(svc *corev1.Service) {
	e.t.Helper()
	url := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))))
	client := &http.Client{Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		e.t.Fatalf("service %s is not served at %s within a minute", svc.Name, url)
	}
}

func (e *env) waitAvailable(name string, replicas int32) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == replicas && d.Status.UpdatedReplicas == replicas, nil
	})
	if err != nil {
		e.t.Fatalf("deployment %s/%s not available with %d replicas: %v", e.ns, name, replicas, err)
	}
}

// runPod runs the demo image with args as a one-shot pod and returns its
// logs and whether it succeeded.
func (e *env) runPod(name string, args ...string) (string, bool) {
	e.t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: restrictedPodSecurity(),
			Containers: []corev1.Container{{
				Name:            "client",
				Image:           cluster.DemoImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
				SecurityContext: restrictedContainerSecurity(),
			}},
		},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create pod %s: %v", name, err)
	}
	var phase corev1.PodPhase
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(wctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		e.t.Fatalf("pod %s did not finish (phase %s): %v", name, phase, err)
	}
	logs, err := e.cs.CoreV1().Pods(e.ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		e.t.Fatalf("logs of %s: %v", name, err)
	}
	return string(logs), phase == corev1.PodSucceeded
}

// firstPod returns the name of a running pod with the label app=app.
func (e *env) firstPod(app string) string {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range e.newestTemplate(pods.Items) {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p.Name
		}
	}
	e.t.Fatalf("no running pod with app=%s", app)
	return ""
}

// newestTemplate keeps the pods of the newest ReplicaSet (the highest
// deployment revision) among those that own pods; pods no ReplicaSet owns
// all stay. A first intercept returns before the Deployment lets its old
// pods go (tether sets the Service's selector back after the return): for
// a moment they are listed running, though no Service sends to them.
func (e *env) newestTemplate(pods []corev1.Pod) []corev1.Pod {
	e.t.Helper()
	rss, err := e.cs.AppsV1().ReplicaSets(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	revision := map[string]int{}
	for _, rs := range rss.Items {
		revision[rs.Name], _ = strconv.Atoi(rs.Annotations["deployment.kubernetes.io/revision"])
	}
	owner := func(p *corev1.Pod) string {
		for _, o := range p.OwnerReferences {
			if o.Kind == "ReplicaSet" {
				return o.Name
			}
		}
		return ""
	}
	newest := ""
	for i := range pods {
		if rs := owner(&pods[i]); rs != "" && (newest == "" || revision[rs] > revision[newest]) {
			newest = rs
		}
	}
	var out []corev1.Pod
	for i := range pods {
		if rs := owner(&pods[i]); rs == "" || rs == newest {
			out = append(out, pods[i])
		}
	}
	return out
}

func restrictedPodSecurity() *corev1.PodSecurityContext {
	nonRoot := true
	return &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
}

func restrictedContainerSecurity() *corev1.SecurityContext {
	no := false
	return &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
}

// tether runs the tether binary (built by `make build` into $TETHER_BIN, or
// built here) with args and returns stdout, stderr and the exit code.
func (e *env) tether(args ...string) (string, string, int) {
	e.t.Helper()
	return runBinary(e.t, tetherBinary(e.t), e.tetherEnv(), args...)
}

func tetherBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("TETHER_BIN"); dir != "" {
		return filepath.Join(dir, "tether")
	}
	out := filepath.Join(t.TempDir(), "tether")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/tether")
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tether: %v\n%s", err, b)
	}
	return out
}

func runBinary(t *testing.T, bin string, extraEnv []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s %v: %v", bin, args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// clientPod starts a long-lived pod running the demo image's sleep, to exec
// requests from, and returns its name once it runs.
func (e *env) clientPod(name string) string {
	e.t.Helper()
	return e.clientPodOn(name, "", nil)
}

// clientPodOn is clientPod on the node named node ("": where the scheduler
// puts it), with labels.
func (e *env) clientPodOn(name, node string, labels map[string]string) string {
	e.t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:        node,
			SecurityContext: restrictedPodSecurity(),
			Containers: []corev1.Container{{
				Name: "client", Image: cluster.DemoImage, ImagePullPolicy: corev1.PullNever,
				Args: []string{"sleep"}, SecurityContext: restrictedContainerSecurity(),
			}},
		},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create pod %s: %v", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(wctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		e.t.Fatalf("pod %s not running: %v", name, err)
	}
	return name
}

// exec runs a command in pod's first container and returns its stdout and
// stderr, and whether it succeeded.
func (e *env) exec(pod string, cmd ...string) (string, bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := cluster.Exec(ctx, e.rc, e.ns, pod, cmd...)
	return out, err == nil
}
