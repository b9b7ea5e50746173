package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	MaybeInit()
	os.Exit(m.Run())
}

// The namespace tests run as an unprivileged user, as tether does on a
// laptop. Run as root (CI's `make test`), a test re-runs itself as the
// user testUser (created when missing) and compares the machine's
// network state before and after; run as a user, it runs in place.
const (
	testUser = "tether-netns-test"
	innerEnv = "TETHER_NETNS_TEST_INNER"
	probeEnv = "TETHER_NETNS_PROBE"
	pyEnv    = "TETHER_NETNS_PYTHON"
)

// unprivileged returns true when the caller must stop: it was root and
// has run the test as testUser in a child process. Otherwise the test body
// runs here, as a user.
func unprivileged(t *testing.T) bool {
	t.Helper()
	if os.Getenv(innerEnv) != "" || os.Geteuid() != 0 {
		if os.Getenv(probeEnv) == "" {
			dir := t.TempDir()
			t.Setenv(probeEnv, buildProbe(t, dir))
		}
		return false
	}
	u := ensureUser(t)
	ensureTUNMode(t)
	dir, err := os.MkdirTemp("", "tether-netns-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "netns.test")
	copyFile(t, self, bin, 0o755)
	probe := buildProbe(t, dir)
	py, _ := filepath.Abs("testdata/probe.py")
	copyFile(t, py, filepath.Join(dir, "probe.py"), 0o644)
	java, _ := filepath.Abs("testdata/Probe.java")
	copyFile(t, java, filepath.Join(dir, "Probe.java"), 0o644)

	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	env := []string{innerEnv + "=1", probeEnv + "=" + probe, pyEnv + "=" + filepath.Join(dir, "probe.py"), "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "TMPDIR=" + home}
	// The cluster tests (-tags integration) need the cluster's kubeconfig:
	// the user gets a copy of its own, deleted with dir.
	if kc := clusterKubeconfig(); strings.HasPrefix(t.Name(), "TestCluster") {
		own := filepath.Join(home, "kubeconfig")
		copyFile(t, kc, own, 0o600)
		if err := os.Chown(own, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
		env = append(env, "KUBECONFIG="+own, "TETHER_AGENT_IMAGE="+os.Getenv("TETHER_AGENT_IMAGE"))
	}
	before := machineState(t)
	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	out, err := cmd.CombinedOutput()
	t.Logf("as user %s (uid %d):\n%s", testUser, u.uid, out)
	if err != nil {
		t.Errorf("the test as %s: %v", testUser, err)
	} else if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Errorf("the test as %s did not pass", testUser)
	}
	after := machineState(t)
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("the machine's network state changed (-before +after):\n%s", d)
	}
	return true
}

type ids struct{ uid, gid int }

func ensureUser(t *testing.T) ids {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("already exists")) {
			t.Fatalf("useradd %s: %v: %s", testUser, err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return ids{uid, gid}
}

// ensureTUNMode gives /dev/net/tun the mode Debian and Ubuntu ship.
func ensureTUNMode(t *testing.T) {
	t.Helper()
	st, err := os.Stat("/dev/net/tun")
	if err != nil {
		t.Fatalf("this machine has no /dev/net/tun: %v", err)
	}
	if st.Mode().Perm() != 0o666 {
		if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// clusterKubeconfig is $KUBECONFIG, else the local cluster's.
func clusterKubeconfig() string {
	if p := os.Getenv("KUBECONFIG"); p != "" {
		return p
	}
	p, _ := filepath.Abs("../../../.cluster/kubeconfig.yaml")
	return p
}

// buildProbe builds testdata/probe as a static binary in dir.
func buildProbe(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v: %s", err, b)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// machineState is what the namespace mode must leave alone: routes,
// interfaces, resolv.conf and firewall rules. The local cluster (k3s)
// changes its own veth interfaces and KUBE-/CNI-/FLANNEL rules whenever
// pods and Services come and go, so those are left out.
func machineState(t *testing.T) map[string]string {
	t.Helper()
	state := map[string]string{}
	run := func(name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		state[name+" "+strings.Join(args, " ")] = filterState(string(out))
	}
	run("ip", "-o", "link", "show")
	run("ip", "-o", "addr", "show")
	run("ip", "route", "show", "table", "all")
	run("ip", "-6", "route", "show", "table", "all")
	run("iptables-save")
	if _, err := exec.LookPath("ip6tables-save"); err == nil {
		run("ip6tables-save")
	}
	rc, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	state["/etc/resolv.conf"] = string(rc)
	return state
}

var (
	// iproute2 prints "Error: Peer netns reference is invalid." for a veth
	// whose peer's namespace is going away: a pod being deleted; and a
	// device by its index ("dev if4460") when it has no name here yet: a
	// pod's veth being moved by the CNI (the cluster tests, which run
	// beside these, start pods; CI once saw its routes appear).
	volatile = regexp.MustCompile(`veth|cni|flannel|KUBE-|CNI-|FLANNEL|^#|^:|Peer netns reference is invalid|dev if[0-9]+\b`)
	// Lifetimes count down (DHCP addresses, routes from router
	// advertisements).
	lifetimes = regexp.MustCompile(`(valid_lft|preferred_lft|expires) \S+`)
)

func filterState(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !volatile.MatchString(l) {
			keep = append(keep, lifetimes.ReplaceAllString(l, "$1 -"))
		}
	}
	return strings.Join(keep, "\n")
}

// fakeCluster stands in for the target pod: Dial reaches local test
// servers for the cluster addresses below, and records every address.
type fakeCluster struct {
	mu     sync.Mutex
	routes map[string]string // cluster "ip:port" -> local "ip:port"
	dialed []string
}

var (
	clusterRange    = netip.MustParsePrefix("10.222.0.0/16")
	clusterPrefixes = []netip.Prefix{clusterRange}
	podDNS          = "10.222.0.10:53"
	svcAddr         = "10.222.0.5:80" // svc1: the echo server
	deniedAddr      = "10.222.0.6:80" // a NetworkPolicy denies it
)

const podResolvConf = "nameserver 10.222.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"

func (f *fakeCluster) Dial(ctx context.Context, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, addr)
	to, ok := f.routes[addr]
	f.mu.Unlock()
	if addr == deniedAddr {
		return nil, errors.New("connection refused by the pod's egress policy")
	}
	if !ok {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to)
}

func (f *fakeCluster) wasDialed(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.dialed {
		if a == addr {
			return true
		}
	}
	return false
}

// hostIP is one of the machine's own addresses that is not loopback: CMD
// reaches it through the TUN and Run's process, like any address outside
// the cluster.
func hostIP(t testing.TB) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no IPv4 address besides loopback")
	return ""
}

func udpEcho(t testing.TB, ip string) string {
	pc, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// resetAddr is a cluster address whose server sends a little, then
// resets: the agent or the daemon dying mid-connection.
var resetAddr = "10.222.0.7:80"

func resetServer(t testing.TB) string {
	l := listenLocal(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "partial")
			time.Sleep(50 * time.Millisecond)
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return l.Addr().String()
}

func newFakeCluster(t testing.TB) *fakeCluster {
	return &fakeCluster{routes: map[string]string{
		svcAddr:   echoServer(t),
		podDNS:    dnsServer(t, "tcp", clusterZone),
		resetAddr: resetServer(t),
	}}
}

func echoServer(t testing.TB) string {
	l := listenLocal(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return l.Addr().String()
}

// lineServer answers every connection with line.
func lineServer(t testing.TB, line string) string {
	return lineServerOn(t, "127.0.0.1", line)
}

func lineServerOn(t testing.TB, ip, line string) string {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, line+"\n")
			c.Close()
		}
	}()
	return l.Addr().String()
}

// runResult is what a Run returned and what CMD printed.
type runResult struct {
	status int
	err    error
	out    string
}

// startRun runs cfg in the background; lines are CMD's stdout, line by line.
func startRun(t testing.TB, cfg Config) (lines <-chan string, result <-chan runResult) {
	pr, pw := io.Pipe()
	var buf bytes.Buffer
	var mu sync.Mutex
	cfg.Stdout = pw
	if cfg.Stderr == nil {
		cfg.Stderr = &testWriter{t: t}
	}
	lc := make(chan string, 1000)
	rc := make(chan runResult, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			buf.WriteString(sc.Text() + "\n")
			mu.Unlock()
			lc <- sc.Text()
		}
		close(lc)
	}()
	go func() {
		st, err := Run(context.Background(), cfg)
		pw.Close()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		rc <- runResult{st, err, buf.String()}
		mu.Unlock()
	}()
	return lc, rc
}

func waitResult(t testing.TB, rc <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-rc:
		return r
	case <-time.After(3 * time.Minute):
		t.Fatal("Run did not return")
		return runResult{}
	}
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("CMD stderr: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestFilterState(t *testing.T) {
	in := "2: eth0    inet 192.168.1.5/24 brd 192.168.1.255 scope global dynamic eth0\\       valid_lft 86234sec preferred_lft 86234sec\n" +
		"5: veth1234@if2: <BROADCAST> mtu 1500\n" +
		"2001:db8::/64 dev eth0 proto ra metric 100 expires 1789sec pref medium"
	want := "2: eth0    inet 192.168.1.5/24 brd 192.168.1.255 scope global dynamic eth0\\       valid_lft - preferred_lft -\n" +
		"2001:db8::/64 dev eth0 proto ra metric 100 expires - pref medium"
	if got := filterState(in); got != want {
		t.Errorf("filterState:\n got %q\nwant %q", got, want)
	}
}
