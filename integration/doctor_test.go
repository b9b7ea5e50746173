//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/internal/access"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/internal/agentspec"
)

// doctorResult is one row of `tether doctor -o json`.
type doctorResult struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// doctor runs `tether doctor -o json` with args as the test's admin and
// returns its rows by check and its exit code.
func (e *env) doctor(args ...string) (map[string]doctorResult, int, string) {
	e.t.Helper()
	args = append(agentImage("doctor", "-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns), args...)
	return e.doctorWith(args...)
}

func (e *env) doctorWith(args ...string) (map[string]doctorResult, int, string) {
	e.t.Helper()
	stdout, stderr, code := e.tether(args...)
	var rows []doctorResult
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		e.t.Fatalf("tether %s: -o json does not parse (exit %d): %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, err, stdout, stderr)
	}
	out := map[string]doctorResult{}
	for _, r := range rows {
		out[r.Check] = r
	}
	return out, code, stderr
}

func (e *env) wantDoctor(rows map[string]doctorResult, check, status string, says ...string) {
	e.t.Helper()
	r, ok := rows[check]
	if !ok {
		e.t.Errorf("doctor has no check %q: %v", check, rows)
		return
	}
	if r.Status != status {
		e.t.Errorf("%s: %s, want %s (%s; fix: %s)", check, r.Status, status, r.Detail, r.Fix)
	}
	for _, s := range says {
		if !strings.Contains(r.Detail+" FIX: "+r.Fix, s) {
			e.t.Errorf("%s: %q (fix %q) does not say %q", check, r.Detail, r.Fix, s)
		}
	}
}

// testAgentImage is the agent image the tests' tether uses.
func testAgentImage() string {
	if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
		return im
	}
	return "docker.io/tetherkube/tether-agent:dev"
}

// wantNoTestPod: doctor deleted its test pod.
func (e *env) wantNoTestPod() {
	e.t.Helper()
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "tether.dev/doctor"})
	if err != nil {
		e.t.Fatal(err)
	}
	// A pod doctor deleted can stay listed, terminating, until its
	// kubelet confirms: one without a deletion time was left.
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			e.t.Errorf("doctor left its test pod: %s", p.Name)
		}
	}
}

// TestDoctor: on a fresh baseline namespace every check passes (this
// machine's `tether run` check honestly warns where it cannot work), the
// test pod ran the agent and is gone, the table reads, bad flags exit 2.
func TestDoctor(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	rows, code, stderr := e.doctor()
	if code != 0 {
		t.Fatalf("doctor exited %d: %v\n%s", code, rows, stderr)
	}
	// The cluster, ephemeral containers, one per feature, pod security,
	// image, port-forward, three leftovers, this machine.
	if n := 9 + len(access.Features); len(rows) != n {
		t.Errorf("%d checks, want %d: %v", len(rows), n, rows)
	}
	for name, r := range rows {
		if r.Status != "ok" && !(name == "run on this machine" && r.Status == "warn") {
			t.Errorf("%s: %s (%s; fix: %s)", name, r.Status, r.Detail, r.Fix)
		}
	}
	e.wantDoctor(rows, "kube context", "ok", "v1.32")
	e.wantDoctor(rows, "pod security", "ok", "enforce=baseline allows every tether agent")
	e.wantDoctor(rows, "agent image", "ok", "started in a test pod")
	e.wantDoctor(rows, "port-forward", "ok", "tunnel handshake with agent")
	e.wantNoTestPod()

	out := e.mustTether(agentImage("doctor")...)
	if !strings.HasPrefix(out, "CHECK") || !strings.Contains(out, "port-forward") {
		t.Errorf("doctor's table:\n%s", out)
	}
	e.wantNoTestPod()
	if _, stderr, code := e.tether("doctor", "--bogus", "--kubeconfig", e.kubeconfig); code != 2 || !strings.Contains(stderr, "unknown flag: --bogus") {
		t.Errorf("doctor --bogus: exit %d, %s; want exit 2", code, stderr)
	}
	if _, stderr, code := e.tether("doctor", "-o", "xml", "--kubeconfig", e.kubeconfig); code != 2 || !strings.Contains(stderr, `unknown output format "xml"`) {
		t.Errorf("doctor -o xml: exit %d, %s; want exit 2", code, stderr)
	}
}

// TestDoctorRestrictedAndLeftovers: in a restricted namespace doctor says
// capture is blocked (and its test pod still runs: the agent passes
// restricted); a journal with no daemon and an agent with no journal are
// reported with their fixes.
func TestDoctorRestrictedAndLeftovers(t *testing.T) {
	e := newEnv(t) // restricted
	ctx := context.Background()
	_, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tether-journal-deployment-orders",
		Labels: map[string]string{"tether.dev/journal": "true", "tether.dev/workload-kind": "Deployment", "tether.dev/workload-name": "orders"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zero := int32(0)
	no, yes := false, true
	labels := map[string]string{"app": "stale"}
	_, err = e.cs.AppsV1().Deployments(e.ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "stale"}, Spec: appsv1.DeploymentSpec{
		Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: "busybox"}, {Name: "tether-agent", Image: "docker.io/tetherkube/tether-agent:dev",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A test pod an interrupted doctor left, ended: its agent refused its
	// arguments.
	_, err = e.cs.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tether-doctor-left", Labels: map[string]string{agentspec.LabelDoctor: "true"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: agentspec.Container, Image: testAgentImage(),
			Args: []string{"--no-such-flag"}, SecurityContext: agentspec.SecurityContext()}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, "tether-doctor-left", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodFailed, nil
	}); err != nil {
		t.Fatalf("the left test pod did not end: %v", err)
	}

	rows, code, stderr := e.doctor()
	if code != 0 {
		t.Fatalf("doctor exited %d (warnings only expected): %v\n%s", code, rows, stderr)
	}
	e.wantDoctor(rows, "leftovers: test pods", "ok", "deleted 1 test pods an interrupted doctor left: tether-doctor-left")
	e.wantDoctor(rows, "pod security", "warn", "enforce=restricted blocks capture", "runs as root", `the API server refuses a dry run of it: violates PodSecurity "restricted:latest"`, "every other feature works", "enforce=baseline")
	e.wantDoctor(rows, "agent image", "ok")
	e.wantDoctor(rows, "port-forward", "ok")
	e.wantDoctor(rows, "leftovers: journals", "warn", "deployment/orders", "no tether daemon runs", "tether rollback --all -n "+e.ns)
	e.wantDoctor(rows, "leftovers: agents", "warn", "deployment/stale", "kubectl -n "+e.ns+" patch deployment stale --type=json", `"path":"/spec/template/spec/containers/1"`)
	e.wantNoTestPod()
}

// TestDoctorBadImage: an agent image that does not exist fails the image
// check (exit 3) with how to load one, and the test pod is gone.
func TestDoctorBadImage(t *testing.T) {
	e := newEnv(t)
	rows, code, stderr := e.doctorWith("doctor", "-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns, "--agent-image", "docker.io/tetherkube/nope:1")
	if code != 3 {
		t.Errorf("doctor exited %d, want 3\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "agent image") {
		t.Errorf("stderr does not name the failed check: %s", stderr)
	}
	e.wantDoctor(rows, "agent image", "fail", "cannot pull docker.io/tetherkube/nope:1", "make agent-image", "k3s ctr images import")
	e.wantDoctor(rows, "port-forward", "skipped")
	e.wantNoTestPod()
}

// TestDoctorNoRole: a user bound to no Role fails the permission checks,
// each listing what is missing; doctor does not try its test pod.
func TestDoctorNoRole(t *testing.T) {
	e := newEnv(t)
	kc := e.userWithRoles("nobody")
	rows, code, stderr := e.doctorWith(agentImage("doctor", "-o", "json", "--kubeconfig", kc, "-n", e.ns)...)
	if code != 3 {
		t.Errorf("doctor exited %d, want 3\n%s", code, stderr)
	}
	e.wantDoctor(rows, "kube context", "ok")
	e.wantDoctor(rows, "permissions: intercept", "fail", "update deployments.apps", "create secrets", "get pods/portforward", "docs/intercept.md")
	e.wantDoctor(rows, "permissions: trace, capture and dns", "fail", "update pods/ephemeralcontainers")
	e.wantDoctor(rows, "permissions: env --source spec", "fail", "get pods")
	e.wantDoctor(rows, "agent image", "warn", "you may not create pods", "tether-doctor")
	e.wantDoctor(rows, "pod security", "warn", "you may not read its labels", "level is unknown")
	e.wantNoTestPod()
}

// TestDoctorDocumentedRole: a user bound to docs/intercept.md's
// tether-doctor Role (and nothing else) runs the image and port-forward
// checks and looks for leftovers; only the features' permissions fail.
func TestDoctorDocumentedRole(t *testing.T) {
	e := newEnv(t)
	role := documentedRoles(t)["tether-doctor"]
	if role == nil {
		t.Fatal("docs/intercept.md has no Role tether-doctor")
	}
	kc := e.userWithRoles("doc", role)
	rows, code, stderr := e.doctorWith(agentImage("doctor", "-o", "json", "--kubeconfig", kc, "-n", e.ns)...)
	if code != 3 {
		t.Errorf("doctor exited %d, want 3 (the features' permissions)\n%s", code, stderr)
	}
	e.wantDoctor(rows, "agent image", "ok", "started in a test pod")
	e.wantDoctor(rows, "port-forward", "ok", "tunnel handshake")
	e.wantDoctor(rows, "leftovers: journals", "ok")
	e.wantDoctor(rows, "leftovers: agents", "ok")
	e.wantDoctor(rows, "leftovers: test pods", "ok")
	// No get on namespaces, but create on pods: the dry runs tell.
	e.wantDoctor(rows, "pod security", "warn", "you may not read its labels", "blocks capture", `the API server refuses a dry run of it: violates PodSecurity "restricted:latest"`)
	e.wantNoTestPod()
}

// TestDoctorMissingVerb: the documented tether-user Role without list on
// endpointslices (the verb the Role once lacked) fails exactly intercept's
// and record's permission checks, naming that one verb.
func TestDoctorMissingVerb(t *testing.T) {
	e := newEnv(t)
	roles := documentedRoles(t)
	user := roles["tether-user"].DeepCopy()
	dropped := false
	for i, r := range user.Rules {
		if len(r.Resources) == 1 && r.Resources[0] == "endpointslices" {
			user.Rules = append(user.Rules[:i], user.Rules[i+1:]...)
			dropped = true
			break
		}
	}
	if !dropped {
		t.Fatalf("the tether-user Role in docs/intercept.md has no endpointslices rule: %+v", user.Rules)
	}
	kc := e.userWithRoles("dev", user, roles["tether-doctor"])
	rows, code, stderr := e.doctorWith(agentImage("doctor", "-o", "json", "--kubeconfig", kc, "-n", e.ns)...)
	if code != 3 {
		t.Errorf("doctor exited %d, want 3\n%s", code, stderr)
	}
	e.wantDoctor(rows, "permissions: intercept", "fail", "1 of 15 missing", "list endpointslices.discovery.k8s.io", "tether-user Role")
	e.wantDoctor(rows, "permissions: record", "fail", "1 of 13 missing", "list endpointslices.discovery.k8s.io")
	for _, ok := range []string{"permissions: requests", "permissions: rollback", "permissions: rollback --all", "agent image", "port-forward"} {
		e.wantDoctor(rows, ok, "ok")
	}
	e.wantNoTestPod()
}
