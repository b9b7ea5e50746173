//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherkube/tether/integration/cluster"
)

// TestVersionReportsServer runs the built tether binary against the cluster,
// directly and as a kubectl plugin.
func TestVersionReportsServer(t *testing.T) {
	e := newEnv(t)
	want, err := e.cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := e.tether("version", "-o", "json", "--kubeconfig", e.kubeconfig)
	if code != 0 {
		t.Fatalf("tether version exited %d: %s", code, stderr)
	}
	var got struct {
		Client struct{ Version string }
		Server *struct{ GitVersion string }
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, stdout)
	}
	if got.Server == nil || got.Server.GitVersion != want.GitVersion {
		t.Errorf("server version = %+v, want %s", got.Server, want.GitVersion)
	}
	if got.Client.Version == "" {
		t.Error("client version is empty")
	}

	// As a kubectl plugin: kubectl finds kubectl-tether on PATH.
	pluginDir := t.TempDir()
	if err := os.Symlink(tetherBinary(t), filepath.Join(pluginDir, "kubectl-tether")); err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(repoRoot(), ".cluster", "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("kubectl from the local cluster's k3s: %v", err)
	}
	env := []string{"PATH=" + pluginDir + ":" + os.Getenv("PATH"), "KUBECONFIG=" + e.kubeconfig}
	stdout, stderr, code = runBinary(t, kubectl, env, "tether", "version")
	if code != 0 {
		t.Fatalf("kubectl tether version exited %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "Server: Kubernetes "+want.GitVersion) {
		t.Errorf("kubectl tether version:\n%s\nwant a line with the server version %s", stdout, want.GitVersion)
	}
	stdout, _, _ = runBinary(t, kubectl, env, "tether", "--help")
	if !strings.Contains(stdout, "kubectl tether [command]") {
		t.Errorf("kubectl tether --help does not name itself as a plugin:\n%s", stdout)
	}
}

// TestClusterHealthy checks the harness's own view of the cluster.
func TestClusterHealthy(t *testing.T) {
	newEnv(t)
	cfg := cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster"))
	if st := cluster.Check(t.Context(), cfg); !st.Healthy() {
		t.Errorf("cluster status %+v: not healthy", st)
	}
}
