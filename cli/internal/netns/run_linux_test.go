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

// TestRunGoStatic runs the static Go probe (Go's own resolver, no libc)
// through every path of the namespace mode.
func TestRunGoStatic(t *testing.T) {
	if unprivileged(t) {
		return
	}
	fc := newFakeCluster(t)
	hostSvc := lineServer(t, "hello from host")
	saDir := t.TempDir()
	if err := os.WriteFile(saDir+"/token", []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []string{
		"resolve:svc1",
		"resolve:svc1.ns1.svc.cluster.local",
		"resolvetcp:svc1",
		"resolve:laptop-only.example",
		"echo:svc1:80:10485760",
		"conc:" + svcAddr + ":200",
		"refused:" + deniedAddr,
		"get:" + hostSvc,
		"cat:/var/run/secrets/kubernetes.io/serviceaccount/token",
		"cat:/etc/resolv.conf",
		"status",
	}
	cfg := testConfig(t, fc, append([]string{os.Getenv(probeEnv)}, steps...)...)
	cfg.hostDNS = []string{dnsServer(t, "udp", laptopZone)}
	cfg.Files = map[string]string{"/var/run/secrets/kubernetes.io/serviceaccount": saDir}
	_, rc := startRun(t, cfg)
	r := waitResult(t, rc)
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, r.out)
	}
	t.Logf("CMD printed:\n%s", r.out)
	if r.status != 0 {
		t.Errorf("exit status %d, want 0", r.status)
	}
	requireSteps(t, r, steps...)
	for _, want := range []string{
		"resolve:svc1 ok 10.222.0.5",
		"resolve:svc1.ns1.svc.cluster.local ok 10.222.0.5",
		"resolvetcp:svc1 ok 10.222.0.5",
		"resolve:laptop-only.example ok 192.0.2.7",
		"serviceaccount/token ok tok-123",
		"cat:/etc/resolv.conf ok nameserver 10.222.0.10",
		"status ok CapPrm=0000000000000000 CapEff=0000000000000000 NoNewPrivs=1",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("CMD's output lacks %q", want)
		}
	}
	if !fc.wasDialed(podDNS) {
		t.Errorf("the pod's nameserver was not asked through Dial")
	}
}
