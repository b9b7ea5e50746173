//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/integration/cluster"
)

// TestEnvMatchesProcess: `tether env` gives the set of variables the
// app's process has, read on the node itself from /proc/PID/environ, for a
// pod on the demo image (scratch: no shell) running as a non-root uid that
// uses every source of variables; --source spec gives the same minus the
// image's and the runtime's; --files writes the files the container sees;
// bad input exits 2 and adds no agent.
func TestEnvMatchesProcess(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod := e.envPod()

	// Bad input: exit 2, a message, and no agent added to the pod.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"env", "pod/nope"}, `no pod "nope"`},
		{[]string{"env", "deploy/nope"}, `no deployment named "nope"`},
		{[]string{"env", "pod/" + pod.Name, "-c", "nope"}, `has no container "nope"; containers: app`},
		{[]string{"env", "pod/" + pod.Name, "--format", "xml"}, `unknown format "xml"`},
		{[]string{"env", "pod/" + pod.Name, "--source", "image"}, `unknown source "image"`},
		{[]string{"env"}, "accepts 1 arg(s), received 0"},
	} {
		args := append(agentImage(tc.args...), "--kubeconfig", e.kubeconfig, "-n", e.ns)
		out, errOut, code := e.tether(args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("tether %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
		if out != "" {
			t.Errorf("tether %s: printed %q", strings.Join(tc.args, " "), out)
		}
	}
	e.wantEphemeral(pod.Name, 0, "after bad input")

	oracle := processEnv(t, pod)
	t.Logf("the process has %d variables", len(oracle))

	// --source spec: the oracle minus what the image and runtime add, and
	// no agent.
	specOut := e.mustTether(agentImage("env", "pod/"+pod.Name, "--source", "spec", "-o", "json")...)
	e.wantEphemeral(pod.Name, 0, "after --source spec")
	wantSpec := map[string]string{}
	for k, v := range oracle {
		if k != "PATH" && k != "HOSTNAME" && k != "HOME" {
			wantSpec[k] = v
		}
	}
	if diff := cmp.Diff(wantSpec, jsonObject(t, specOut)); diff != "" {
		t.Errorf("--source spec differs from the process's environment without PATH, HOSTNAME, HOME (-process +tether):\n%s", diff)
	}

	// The process's own environment, through an agent running as its user.
	procOut := e.mustTether(agentImage("env", "pod/"+pod.Name, "-o", "json")...)
	if diff := cmp.Diff(oracle, jsonObject(t, procOut)); diff != "" {
		t.Errorf("tether env differs from /proc/PID/environ (-process +tether):\n%s", diff)
	}

	// The sources say where each variable comes from.
	var list []struct {
		Name, Value, Source string
		Secret              bool
	}
	if err := json.Unmarshal([]byte(e.mustTether(agentImage("env", "pod/"+pod.Name, "-o", "json", "--sources")...)), &list); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{}
	for _, v := range list {
		sources[v.Name] = fmt.Sprintf("%s secret=%v", v.Source, v.Secret)
	}
	for name, want := range map[string]string{
		"DB_HOST": "configmap/app key DB_HOST secret=false", "S_token": "secret/creds key token secret=true",
		"TOKEN": "secret/creds key token secret=true", "POD": "fieldRef metadata.name secret=false",
		"PAY_API_SERVICE_HOST": "service link service/pay-api secret=false", "HOSTNAME": "runtime secret=false",
		"URL": "env secret=false", "MEM_MI": "resourceFieldRef limits.memory secret=false",
	} {
		if sources[name] != want {
			t.Errorf("%s: source %q, want %q", name, sources[name], want)
		}
	}

	// --files: the files the container sees, 0600, under DIR/<mountPath>.
	dir := t.TempDir()
	envFile := filepath.Join(dir, "pod.env")
	root := filepath.Join(dir, "root")
	args := append(agentImage("env", "pod/"+pod.Name, "-f", envFile, "--files", root), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	_, errOut, code := e.tether(args...)
	if code != 0 {
		t.Fatalf("env --files exited %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "not copied: /scratch (emptyDir volume scratch)") {
		t.Errorf("the emptyDir is not listed as not copied:\n%s", errOut)
	}
	wantFileMode(t, envFile, 0o600)
	envText, _ := os.ReadFile(envFile)
	if !strings.Contains(string(envText), "TETHER_ROOT="+root+"\n") || !strings.Contains(string(envText), "S_token=\"s3cr'et\"\n") {
		t.Errorf("the env file lacks TETHER_ROOT or the secret:\n%s", envText)
	}
	procRoot := fmt.Sprintf("/proc/%d/root", processOf(t, pod))
	files := 0
	for _, mp := range []string{"/etc/app", "/etc/creds", "/etc/podinfo", "/var/run/secrets/kubernetes.io/serviceaccount"} {
		for rel, data := range podFiles(t, procRoot+mp) {
			files++
			local := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(mp, "/")), rel)
			got, err := os.ReadFile(local)
			if err != nil || string(got) != string(data) {
				t.Errorf("%s/%s: local copy %q (%v), the container sees %q", mp, rel, got, err, data)
				continue
			}
			wantFileMode(t, local, 0o600)
		}
	}
	single, err := os.ReadFile(procRoot + "/etc/single.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "etc", "single.yaml")); err != nil || string(got) != string(single) {
		t.Errorf("subPath mount /etc/single.yaml: local copy %q (%v), the container sees %q", got, err, single)
	} else {
		wantFileMode(t, filepath.Join(root, "etc", "single.yaml"), 0o600)
	}
	if files < 8 {
		t.Errorf("only %d files in the container's volumes: the test pod is not what it should be", files)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("folder etc: %v %v, want 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(root, "scratch")); !os.IsNotExist(err) {
		t.Errorf("the emptyDir was copied: %v", err)
	}

	// One agent served all of it: it runs as the process's user.
	p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Spec.EphemeralContainers); n != 1 {
		t.Errorf("%d agents added, want 1 (reused)", n)
	}

	// A ConfigMap changed after the container started: the process keeps
	// its value, tether prints it and names the variable.
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["DB_HOST"] = "db.changed"
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	args = append(agentImage("env", "pod/"+pod.Name, "-o", "json"), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	out, errOut, code := e.tether(args...)
	if code != 0 {
		t.Fatalf("env exited %d: %s", code, errOut)
	}
	if diff := cmp.Diff(oracle, jsonObject(t, out)); diff != "" {
		t.Errorf("after the ConfigMap changed, tether env differs from the process (-process +tether):\n%s", diff)
	}
	if !strings.Contains(errOut, "warning: DB_HOST: the process's value differs") {
		t.Errorf("no warning names DB_HOST:\n%s", errOut)
	}
	if got := jsonObject(t, e.mustTether(agentImage("env", "pod/"+pod.Name, "--source", "spec", "-o", "json")...))["DB_HOST"]; got != "db.changed" {
		t.Errorf("--source spec: DB_HOST = %q, want the ConfigMap's new value", got)
	}
}

// TestEnvFindsTheUser: for a process whose user the spec does not give
// (the image's USER: root for CoreDNS's image), the first agent, running
// as its own image's user, may not read it; tether adds one that runs as
// the process's user (uid and gid read from /proc/PID/status) and reads
// it. A root agent keeps the runtime's default capabilities: the baseline
// Pod Security level allows that.
func TestEnvFindsTheUser(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "coredns", Image: cluster.CoreDNSImage, ImagePullPolicy: corev1.PullNever,
			Env: []corev1.EnvVar{{Name: "GREETING", Value: "hello $(HOSTNAME)"}},
		}}},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(wctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, "dns", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			pod = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod dns does not run: %v", err)
	}
	oracle := processEnv(t, pod)
	args := append(agentImage("env", "pod/dns", "-o", "json"), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	out, errOut, code := e.tether(args...)
	if code != 0 {
		t.Fatalf("env exited %d: %s", code, errOut)
	}
	if diff := cmp.Diff(oracle, jsonObject(t, out)); diff != "" {
		t.Errorf("tether env differs from /proc/PID/environ (-process +tether):\n%s", diff)
	}
	if !strings.Contains(errOut, "the process runs as uid 0 gid 0") {
		t.Errorf("stderr does not say which user the process runs as:\n%s", errOut)
	}
	e.wantEphemeral("dns", 2, "after env")
	// The next run reuses the root agent: no third container.
	if _, errOut, code := e.tether(args...); code != 0 {
		t.Fatalf("second env exited %d: %s", code, errOut)
	}
	e.wantEphemeral("dns", 2, "after a second env")
}

// TestDocumentedEnvRoleWorks: a user bound to exactly the tether-env Role
// of docs/intercept.md reads a container's environment from its process
// and from its spec.
func TestDocumentedEnvRoleWorks(t *testing.T) {
	e := newEnv(t)
	pod := e.envPod()
	role := documentedRoles(t)["tether-env"]
	if role == nil {
		t.Fatal("docs/intercept.md lacks the Role tether-env")
	}
	kc := e.userWithRoles("dev", role)
	as := func(args ...string) string {
		t.Helper()
		args = append(args, "--kubeconfig", kc, "-n", e.ns)
		stdout, stderr, code := runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, args...)
		if code != 0 {
			t.Fatalf("as the tether-env Role, tether %s exited %d:\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
		}
		if strings.Contains(stderr, "read from the spec, not the process") {
			t.Errorf("as the tether-env Role, tether %s fell back to the spec:\n%s", strings.Join(args, " "), stderr)
		}
		return stdout
	}
	oracle := processEnv(t, pod)
	if diff := cmp.Diff(oracle, jsonObject(t, as(agentImage("env", "pod/"+pod.Name, "--source", "process", "-o", "json")...))); diff != "" {
		t.Errorf("as the tether-env Role, env differs from the process (-process +tether):\n%s", diff)
	}
	// What the spec could not give (namespace default's Service, the
	// node's allocatable cpu) the process has: its sources are said.
	var list []struct{ Name, Source string }
	if err := json.Unmarshal([]byte(as(agentImage("env", "pod/"+pod.Name, "-o", "json", "--sources")...)), &list); err != nil {
		t.Fatal(err)
	}
	for _, v := range list {
		if (v.Name == "KUBERNETES_SERVICE_HOST" && v.Source != "service link service/kubernetes") ||
			(v.Name == "CPU_LIMIT" && v.Source != "resourceFieldRef limits.cpu") {
			t.Errorf("%s: source %q", v.Name, v.Source)
		}
	}
	// The Role grants nothing in namespace default: the kubernetes
	// Service's variables are left out, and tether says so.
	args := []string{"env", "pod/" + pod.Name, "--source", "spec", "-o", "json", "--kubeconfig", kc, "-n", e.ns}
	stdout, stderr, code := runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, args...)
	if code != 0 {
		t.Fatalf("as the tether-env Role, env --source spec exited %d: %s", code, stderr)
	}
	spec := jsonObject(t, stdout)
	if spec["TOKEN"] != oracle["TOKEN"] || spec["PAY_API_SERVICE_HOST"] != oracle["PAY_API_SERVICE_HOST"] {
		t.Errorf("as the tether-env Role, --source spec lacks the secret or the namespace's service links: %v", spec)
	}
	if _, ok := spec["KUBERNETES_SERVICE_HOST"]; ok || !strings.Contains(stderr, "the KUBERNETES_SERVICE_* variables, which every container gets, are left out") {
		t.Errorf("without access to namespace default, the kubernetes service's variables are not said to be left out:\n%s", stderr)
	}
}
