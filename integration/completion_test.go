//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completions parses cobra's __complete answer: the candidates (without
// descriptions) and the directive line.
func completions(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, ":") || line == "" {
			continue
		}
		name, _, _ := strings.Cut(line, "\t")
		got = append(got, name)
	}
	return got
}

// TestCompletion: the shell completion offers the cluster's names —
// workloads for intercept, the Service's ports for --port, running pods
// for capture, pod/NAME for run — and the same through kubectl's plugin
// completion (kubectl __complete tether ..., which runs
// kubectl_complete-tether).
func TestCompletion(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	pod := e.firstPod("orders")
	flags := []string{"--kubeconfig", e.kubeconfig, "-n", e.ns}
	complete := func(args ...string) []string {
		t.Helper()
		// The word being completed comes last.
		line := append(append(append([]string{"__complete", args[0]}, flags...), args[1:len(args)-1]...), args[len(args)-1])
		out, stderr, code := e.tether(line...)
		if code != 0 {
			t.Fatalf("tether __complete %v exited %d: %s", args, code, stderr)
		}
		return completions(t, out)
	}
	if got := complete("intercept", ""); !slices.Equal(got, []string{"orders"}) {
		t.Errorf("intercept WORKLOAD: %v, want [orders]", got)
	}
	if got := complete("intercept", "deploy/"); !slices.Equal(got, []string{"deploy/orders"}) {
		t.Errorf("intercept deploy/: %v, want [deploy/orders]", got)
	}
	var wantPorts []string
	for _, p := range svc.Spec.Ports {
		wantPorts = append(wantPorts, p.Name)
	}
	slices.Sort(wantPorts)
	if got := complete("intercept", "orders", "--port", ""); !slices.Equal(got, wantPorts) {
		t.Errorf("intercept orders --port: %v, want %v", got, wantPorts)
	}
	if got := complete("capture", ""); !slices.Equal(got, []string{pod}) {
		t.Errorf("capture POD: %v, want [%s]", got, pod)
	}
	if got := complete("run", "pod/"); !slices.Contains(got, "pod/"+pod) {
		t.Errorf("run pod/: %v, want pod/%s among them", got, pod)
	}
	if got := complete("requests", "list", ""); !slices.Equal(got, []string{"orders"}) {
		t.Errorf("requests list WORKLOAD: %v, want [orders]", got)
	}

	// kubectl's plugin completion: kubectl-tether and kubectl_complete-tether
	// on PATH, both tether itself.
	dir := t.TempDir()
	for _, name := range []string{"kubectl-tether", "kubectl_complete-tether"} {
		if err := os.Symlink(tetherBinary(t), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	kubectl := filepath.Join(repoRoot(), ".cluster", "bin", "kubectl")
	env := []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "KUBECONFIG=" + e.kubeconfig}
	out, stderr, code := runBinary(t, kubectl, env, "__complete", "tether", "intercept", "orders", "-n", e.ns, "--port", "")
	if code != 0 {
		t.Fatalf("kubectl __complete tether exited %d: %s", code, stderr)
	}
	if got := completions(t, out); !slices.Equal(got, wantPorts) {
		t.Errorf("kubectl __complete tether intercept orders --port: %v, want %v\n%s", got, wantPorts, out)
	}
}
