//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/internal/dist"
)

// krewVersion is the krew release the test installs the plugin with,
// built from its Go module.
const krewVersion = "v0.4.3"

// TestDist builds a release (the CLI for linux/amd64 and windows/amd64 and
// the agent image; `make dist` builds every platform the same way), and
// checks what a user relies on: the same bytes from the same commit in
// another checkout with an empty build cache; SHA256SUMS right; the krew
// manifest valid for krew's own validator and installable from the local
// archive with krew, after which `kubectl tether` runs the release; the
// agent image tarball, loaded into the cluster, runs tether's agent.
func TestDist(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("this test installs the linux/amd64 archive; run it on linux/amd64")
	}
	e := newEnv(t)
	out := t.TempDir()
	head, err := exec.Command("git", "-C", repoRoot(), "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := "v0.0.0-" + strings.TrimSpace(string(head))
	platforms := []dist.Platform{{OS: "linux", Arch: "amd64"}, {OS: "windows", Arch: "amd64"}}
	cfg := dist.Config{Version: version, Out: out, Source: repoRoot(), AgentRepo: "docker.io/tetherkube/tether-agent",
		ReleaseURL: "https://example.invalid/{version}/{file}", Platforms: platforms}
	arts, err := dist.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(out, "tether_"+version+"_linux_amd64.tar.gz")

	// The same commit, another folder, an empty build cache: the same bytes.
	// (The tree is HEAD as committed; a dirty tree would differ, rightly.)
	other := t.TempDir()
	src := filepath.Join(other, "src")
	if b, err := exec.Command("git", "-C", repoRoot(), "worktree", "add", "--detach", src, "HEAD").CombinedOutput(); err != nil {
		t.Fatalf("git worktree add: %v\n%s", err, b)
	}
	t.Cleanup(func() { exec.Command("git", "-C", repoRoot(), "worktree", "remove", "--force", src).Run() })
	again := cfg
	again.Out, again.Source, again.Platforms = filepath.Join(other, "out"), src, platforms[:1]
	again.Env = []string{"GOCACHE=" + filepath.Join(other, "gocache")}
	arts2, err := dist.Build(again)
	if err != nil {
		t.Fatal(err)
	}
	sums := func(as []dist.Artifact) map[string]string {
		m := map[string]string{}
		for _, a := range as {
			m[a.Name] = a.SHA256
		}
		return m
	}
	first, second := sums(arts), sums(arts2)
	for _, name := range []string{filepath.Base(archive), "tether-agent_" + version + "_oci.tar"} {
		if first[name] == "" || first[name] != second[name] {
			t.Errorf("%s: %s, then %s in a fresh checkout and cache: not reproducible", name, first[name], second[name])
		}
	}
	written, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil || bytes.Count(written, []byte("\n")) != len(arts) {
		t.Errorf("sha256sum --check: %v\n%s\nSHA256SUMS:\n%s", err, b, written)
	}

	// krew, built from its module: its validator, then an install from the
	// local archive, then kubectl runs the plugin.
	gobin := t.TempDir()
	install := exec.Command("go", "install", "sigs.k8s.io/krew/cmd/krew@"+krewVersion, "sigs.k8s.io/krew/cmd/validate-krew-manifest@"+krewVersion)
	install.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	if b, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install krew: %v\n%s", err, b)
	}
	manifest := filepath.Join(out, "plugins", "tether.yaml")
	if b, err := exec.Command(filepath.Join(gobin, "validate-krew-manifest"), "-manifest", manifest, "-skip-install").CombinedOutput(); err != nil {
		t.Errorf("validate-krew-manifest: %v\n%s", err, b)
	}
	krewRoot := t.TempDir()
	krew := exec.Command(filepath.Join(gobin, "krew"), "install", "--manifest="+manifest, "--archive="+archive)
	krew.Env = append(os.Environ(), "KREW_ROOT="+krewRoot)
	if b, err := krew.CombinedOutput(); err != nil {
		t.Fatalf("krew install: %v\n%s", err, b)
	}
	kubectl := filepath.Join(repoRoot(), ".cluster", "bin", "kubectl")
	env := []string{"PATH=" + filepath.Join(krewRoot, "bin") + ":" + os.Getenv("PATH"), "KUBECONFIG=" + e.kubeconfig}
	stdout, stderr, code := runBinary(t, kubectl, env, "tether", "version")
	if code != 0 || !strings.Contains(stdout, "Client: tether "+version) || !strings.Contains(stdout, "Server: Kubernetes") {
		t.Errorf("kubectl tether version (installed by krew): exit %d\n%s\n%s", code, stdout, stderr)
	}

	// The agent image tarball, loaded as a user without a registry would,
	// runs the agent: a recording with that image is served.
	ccfg := cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster"))
	if err := cluster.ImportTarball(context.Background(), ccfg, filepath.Join(out, "tether-agent_"+version+"_oci.tar")); err != nil {
		t.Fatal(err)
	}
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http", "--agent-image", "docker.io/tetherkube/tether-agent:"+version)
	if out, ok := e.exec(client, "/tether-demo", "get", "http://orders."+e.ns+".svc.cluster.local/orders/7"); !ok {
		t.Errorf("the app behind the release's agent did not answer: %s", out)
	}
	if n := len(e.requestsListOf("orders")); n == 0 {
		t.Error("the release's agent recorded nothing")
	}
}
