package netns

import (
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func testConfig(t *testing.T, fc *fakeCluster, argv ...string) Config {
	return Config{
		Argv:       argv,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + os.Getenv("HOME")},
		Dial:       fc.Dial,
		Cluster:    []netip.Prefix{clusterRange},
		ResolvConf: []byte(podResolvConf),
		Logger:     slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// requireSteps checks that every step printed "ok".
func requireSteps(t *testing.T, r runResult, steps ...string) {
	t.Helper()
	for _, s := range steps {
		if !strings.Contains(r.out, s+" ok") {
			t.Errorf("step %s did not pass; CMD printed:\n%s", s, r.out)
		}
	}
}

func TestRunTCPToCluster(t *testing.T) {
	if unprivileged(t) {
		return
	}
	fc := newFakeCluster(t)
	probe := os.Getenv(probeEnv)
	_, rc := startRun(t, testConfig(t, fc, probe, "echo:"+svcAddr+":1000", "exit:3"))
	r := waitResult(t, rc)
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, r.out)
	}
	if r.status != 3 {
		t.Errorf("exit status %d, want 3; CMD printed:\n%s", r.status, r.out)
	}
	requireSteps(t, r, "echo:"+svcAddr+":1000")
	if !fc.wasDialed(svcAddr) {
		t.Errorf("Dial was not asked for %s", svcAddr)
	}
}
