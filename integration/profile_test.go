//go:build integration

package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRunProfilesTheAgent: with TETHER_PROFILE_DIR the daemon profiles the
// agent it links to for `tether run` through the tunnel, and writes the
// agent's profiles beside its own (`make bench PROFILE=1`).
func TestRunProfilesTheAgent(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	dir := t.TempDir()
	env := append(e.tetherEnv(), "TETHER_PROFILE_DIR="+dir)
	args := e.runArgs([]string{"run", "deploy/orders"}, []string{"-q"}, "sh", "-c", "for i in 1 2 3 4 5; do curl -sS -m 20 --fail http://orders/whoami >/dev/null || exit 1; done")
	if _, errOut, code := runBinary(t, tetherBinary(t), env, args...); code != 0 {
		t.Fatalf("tether run: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runBinary(t, tetherBinary(t), env, "quit", "--kubeconfig", e.kubeconfig); code != 0 {
		t.Fatalf("tether quit: exit %d: %s", code, errOut)
	}
	for _, kind := range []string{"cpu", "block", "mutex", "heap"} {
		name := filepath.Join(dir, "agent-"+pod+"."+kind+".pprof")
		b, err := os.ReadFile(name)
		if err != nil || !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Errorf("%s: not a pprof profile (%v)", name, err)
		}
	}
	// The daemon writes its own profiles as its process ends, after quit
	// returned; the .args file comes last.
	var ended []string
	for deadline := time.Now().Add(15 * time.Second); len(ended) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ended, _ = filepath.Glob(filepath.Join(dir, "daemon-*.args"))
	}
	if daemon, _ := filepath.Glob(filepath.Join(dir, "daemon-*.cpu.pprof")); len(daemon) != 1 || len(ended) != 1 {
		t.Errorf("the daemon's own profile: %v (%v), want one", daemon, ended)
	}
}
