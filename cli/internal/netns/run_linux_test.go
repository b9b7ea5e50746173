package netns

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
)

func testConfig(t testing.TB, fc *fakeCluster, argv ...string) Config {
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

// TestRunReconnectSamePort: CMD's kernel may reuse a local port whose
// 4-tuple is still in TIME_WAIT on tether's side (the server closed
// first); the new SYN must reach the cluster, not be dropped (it was, and
// the connect timed out: 2 of 3,000 new connections of the bench).
func TestRunReconnectSamePort(t *testing.T) {
	if unprivileged(t) {
		return
	}
	fc := newFakeCluster(t)
	const lineAddr = "10.222.0.8:80"
	fc.routes[lineAddr] = lineServer(t, "bye")
	probe := os.Getenv(probeEnv)
	_, rc := startRun(t, testConfig(t, fc, probe, "reconnect:"+lineAddr+":5"))
	r := waitResult(t, rc)
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, r.out)
	}
	requireSteps(t, r, "reconnect:"+lineAddr+":5")
}

// TestRunGoStatic runs the static Go probe (Go's own resolver, no libc)
// through every path of the namespace mode.
func TestRunGoStatic(t *testing.T) {
	if unprivileged(t) {
		return
	}
	fc := newFakeCluster(t)
	hostSvc := lineServer(t, "hello from host")
	hostSvc6 := lineServerOn(t, "[::1]", "hello from host v6")
	ip := hostIP(t)
	lanSvc := lineServerOn(t, ip, "hello from the LAN side")
	lanUDP := udpEcho(t, ip)
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
		"get:" + hostSvc6,
		"get:" + lanSvc,
		"udp:" + lanUDP,
		"drain:" + resetAddr,
		"cat:/var/run/secrets/kubernetes.io/serviceaccount/token",
		"cat:/etc/tether-test/app.conf",
		"cat:/etc/resolv.conf",
		"cat:/etc/hostname",
		"status",
	}
	cfg := testConfig(t, fc, append([]string{os.Getenv(probeEnv)}, steps...)...)
	cfg.hostDNS = []string{dnsServer(t, "udp", laptopZone)}
	appConf := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(appConf, []byte("level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Files = map[string]string{
		"/var/run/secrets/kubernetes.io/serviceaccount": saDir,
		// /etc/tether-test does not exist: /etc is mirrored for CMD, with
		// the pod's resolv.conf already mounted in it.
		"/etc/tether-test/app.conf": appConf,
	}
	hostname, _ := os.ReadFile("/etc/hostname")
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
		"cat:/etc/tether-test/app.conf ok level: debug",
		"cat:/etc/hostname ok " + strings.TrimSpace(string(hostname)),
		"ok hello from the LAN side",
		"ok hello from host v6",
		"udp:" + lanUDP + " ok ping",
		"drain:" + resetAddr + " ok reset after 7 bytes",
		"cat:/etc/resolv.conf ok nameserver 10.222.0.10",
		"status ok CapPrm=0000000000000000 CapEff=0000000000000000 NoNewPrivs=1",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("CMD's output lacks %q", want)
		}
	}
	if _, err := os.Stat("/etc/tether-test"); err == nil {
		t.Error("/etc/tether-test exists on the machine")
	}
	if !fc.wasDialed(podDNS) {
		t.Errorf("the pod's nameserver was not asked through Dial")
	}
}

func freePort(t *testing.T) int {
	l := listenLocal(t)
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("CMD ended before printing %q", want)
			}
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("CMD did not print %q", want)
		}
	}
}

// TestRunListenerReachedFromHost: a port CMD listens on is reachable
// from the machine's loopback at the same number while CMD runs.
func TestRunListenerReachedFromHost(t *testing.T) {
	if unprivileged(t) {
		return
	}
	for _, tc := range []struct{ listen, dial string }{
		{"127.0.0.1", "127.0.0.1"},
		{"0.0.0.0", "127.0.0.1"},
		{"[::1]", "[::1]"},
		{"[::]", "127.0.0.1"}, // dual-stack
	} {
		t.Run(tc.listen, func(t *testing.T) {
			fc := newFakeCluster(t)
			port := strconv.Itoa(freePort(t))
			lines, rc := startRun(t, testConfig(t, fc, os.Getenv(probeEnv), "listen:"+tc.listen+":"+port, "exit:7"))
			waitLine(t, lines, "listening")
			var got string
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", tc.dial+":"+port, time.Second)
				if err == nil {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					b, _ := io.ReadAll(c)
					c.Close()
					if got = string(b); got != "" {
						break
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != "hello from cmd\n" {
				t.Errorf("from the machine's %s:%s got %q, want CMD's greeting", tc.dial, port, got)
			}
			r := waitResult(t, rc)
			if r.err != nil || r.status != 7 {
				t.Errorf("Run = %d, %v; want 7, nil; CMD printed:\n%s", r.status, r.err, r.out)
			}
			// Once CMD is gone, so is the port on the machine.
			if c, err := net.DialTimeout("tcp", tc.dial+":"+port, time.Second); err == nil {
				c.Close()
				t.Errorf("%s:%s still accepts after CMD exited", tc.dial, port)
			}
		})
	}
}

func TestRunExitStatus(t *testing.T) {
	if unprivileged(t) {
		return
	}
	for _, tc := range []struct {
		step string
		want int
	}{
		{"exit:0", 0},
		{"exit:5", 5},
		{"killself", 128 + 15},
	} {
		t.Run(tc.step, func(t *testing.T) {
			_, rc := startRun(t, testConfig(t, newFakeCluster(t), os.Getenv(probeEnv), tc.step))
			r := waitResult(t, rc)
			if r.err != nil || r.status != tc.want {
				t.Errorf("Run = %d, %v; want %d, nil", r.status, r.err, tc.want)
			}
		})
	}
}

// TestRunSignal: a SIGINT sent to Run's process (not from a terminal)
// reaches CMD, which exits as it chooses. (When the test itself runs in a
// terminal's foreground, SIGINT is taken for the terminal's and not
// passed on, so SIGTERM stands in.)
func TestRunSignal(t *testing.T) {
	if unprivileged(t) {
		return
	}
	sig, step := syscall.SIGINT, "sigwait"
	if fromTerminal(sig) {
		sig, step = syscall.SIGTERM, "sigwait:TERM"
	}
	lines, rc := startRun(t, testConfig(t, newFakeCluster(t), os.Getenv(probeEnv), step))
	waitLine(t, lines, "ready")
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, rc)
	if r.err != nil || r.status != 42 {
		t.Errorf("Run = %d, %v; want 42 (CMD's own exit on %v), nil", r.status, r.err, sig)
	}
}

func TestRunBadInput(t *testing.T) {
	fc := &fakeCluster{}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
		want string
	}{
		{"no command", nil, "no command to run"},
		{"not in PATH", []string{"tether-no-such-command"}, `"tether-no-such-command" is not found in PATH`},
		{"not executable", []string{plain}, "is not an executable file"},
		{"missing path", []string{"./nope"}, "is not an executable file"},
		{"relative file mount", []string{"/bin/true"}, "must be absolute"},
		{"missing file source", []string{"/bin/true"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, fc, tc.argv...)
			switch tc.name {
			case "relative file mount":
				cfg.Files = map[string]string{"var/run/x": plain}
			case "missing file source":
				cfg.Files = map[string]string{"/var/run/x": plain + ".missing"}
			}
			_, err := Run(context.Background(), cfg)
			if err == nil || !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v; want a user error saying %q", err, tc.want)
			}
		})
	}
	if len(fc.dialed) != 0 {
		t.Errorf("bad input dialed %v", fc.dialed)
	}
}

// TestRunPython runs a Python script: glibc's resolver (getaddrinfo with
// resolv.conf's search list and ndots), CPython's sockets.
func TestRunPython(t *testing.T) {
	if unprivileged(t) {
		return
	}
	runScript(t, "python3", testdataFile(t, "probe.py"))
}

// TestRunJava runs a Java program (Debian's OpenJDK): the JVM's resolver
// and sockets.
func TestRunJava(t *testing.T) {
	if unprivileged(t) {
		return
	}
	runScript(t, "java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", testdataFile(t, "Probe.java"))
}

// testdataFile is testdata/NAME, copied where the unprivileged user reads it.
func testdataFile(t *testing.T, name string) string {
	if d := os.Getenv(pyEnv); d != "" {
		return filepath.Join(filepath.Dir(d), name)
	}
	p, _ := filepath.Abs(filepath.Join("testdata", name))
	return p
}

func runScript(t *testing.T, cmd ...string) {
	fc := newFakeCluster(t)
	hostSvc := lineServer(t, "hello from host")
	port := strconv.Itoa(freePort(t))
	steps := []string{
		"resolve:svc1",
		"resolve:svc1.ns1.svc.cluster.local",
		"resolve:laptop-only.example",
		"echo:svc1:80:10485760",
		"conc:" + svcAddr + ":200",
		"refused:" + deniedAddr,
		"get:" + hostSvc,
		"listen:127.0.0.1:" + port,
	}
	cfg := testConfig(t, fc, append(cmd, steps...)...)
	cfg.hostDNS = []string{dnsServer(t, "udp", laptopZone)}
	lines, rc := startRun(t, cfg)
	waitLine(t, lines, "listening")
	var got []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(got) == 0; time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ = io.ReadAll(c)
			c.Close()
		}
	}
	r := waitResult(t, rc)
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, r.out)
	}
	t.Logf("CMD printed:\n%s", r.out)
	if r.status != 0 {
		t.Errorf("exit status %d, want 0", r.status)
	}
	if string(got) != "hello from cmd\n" {
		t.Errorf("CMD's port from the machine: %q", got)
	}
	requireSteps(t, r, steps...)
	for _, want := range []string{"resolve:svc1 ok 10.222.0.5", "resolve:svc1.ns1.svc.cluster.local ok 10.222.0.5", "resolve:laptop-only.example ok 192.0.2.7"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("CMD's output lacks %q", want)
		}
	}
}

// TestRunContextEnds: when Run's context ends, CMD gets SIGTERM.
func TestRunContextEnds(t *testing.T) {
	if unprivileged(t) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cfg := testConfig(t, newFakeCluster(t), os.Getenv(probeEnv), "sigwait") // SIGINT only: SIGTERM kills it
	cfg.Stdout = pw
	done := make(chan runResult, 1)
	go func() {
		st, err := Run(ctx, cfg)
		pw.Close()
		done <- runResult{status: st, err: err}
	}()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("CMD printed %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	cancel()
	r := waitResult(t, done)
	if r.err != nil || r.status != 128+15 {
		t.Errorf("Run = %d, %v; want 143 (SIGTERM), nil", r.status, r.err)
	}
}

// TestCheckHere: the machine the tests run on can run the namespace mode
// (as the unprivileged user, once /dev/net/tun has Debian's mode).
func TestCheckHere(t *testing.T) {
	if unprivileged(t) {
		return
	}
	if err := Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := (realHost{}).TryNamespaces(); err != nil {
		t.Errorf("TryNamespaces: %v", err)
	}
}

// TestRunInitFails: when the namespaces cannot be set up for a reason
// Check does not know (here the init exits at once, as when a seccomp
// profile kills it), Run says so as a user error that points at the proxy
// mode, and leaves nothing behind.
func TestRunInitFails(t *testing.T) {
	cfg := testConfig(t, &fakeCluster{}, "/bin/true")
	cfg.initPath = "/bin/false"
	tmpBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "tether-run-*"))
	_, err := Run(context.Background(), cfg)
	if err == nil || !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), "--network proxy") {
		t.Errorf("Run: %v; want a user error pointing at --network proxy", err)
	}
	tmpAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "tether-run-*"))
	if len(tmpAfter) > len(tmpBefore) {
		t.Errorf("Run left temporary directories: %v", tmpAfter)
	}
}

// helperEnv makes the test binary run Run with the probe's "pid" and
// "sigwait" steps (TestRunDiesWithTether's stand-in for tether).
const helperEnv = "TETHER_NETNS_TEST_HELPER"

// TestRunDiesWithTether: when tether's process is killed (SIGKILL, no
// cleanup), the init and CMD die with it.
func TestRunDiesWithTether(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		fc := newFakeCluster(t)
		cfg := testConfig(t, fc, os.Getenv(probeEnv), "pid", "sigwait")
		cfg.Stdout = os.Stdout
		_, _ = Run(context.Background(), cfg)
		return
	}
	if unprivileged(t) {
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(self, "-test.run", "^TestRunDiesWithTether$")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pid ok "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatal("the helper's CMD did not print its pid")
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("CMD (pid %d) is not running: %v", pid, err)
	}
	_ = helper.Process.Kill()
	_ = helper.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("CMD (pid %d) still runs 10 s after tether's process was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
