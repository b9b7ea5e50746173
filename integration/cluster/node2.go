package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Node 2 is a k3s agent joined to the server, on this machine but in
// network and mount namespaces of its own: its kubelet, containerd, kube-proxy
// and policy controller see their own interfaces, iptables, /run/k3s,
// /var/lib/kubelet, /etc/rancher/node and /var/log, so nothing collides with
// the server's (whose containerd socket path is fixed, k3s-io/k3s#1358, and
// whose kubelet would garbage-collect the other's pod logs and cgroups).
//
// The two are wired by a veth pair and plain routes, no overlay and no NAT:
//
//	host  node2Veth  198.51.100.1/30  route Node2PodCIDR via .2
//	node2 eth0       198.51.100.2/30  default via .1
const (
	node2Veth = "tether-n2"
	// node2Cgroup is node 2's kubelet's cgroup root, in every hierarchy:
	// each kubelet removes the pod cgroups it does not know under its own.
	node2Cgroup = "tether-node-2"
)

var (
	node2HostAddr = netip.MustParsePrefix("198.51.100.1/30") // TEST-NET-2: never routed anywhere
	node2Addr     = netip.MustParsePrefix("198.51.100.2/30")
)

// Paths of what node 2 keeps under Dir/node2.
func (c Config) node2Dir() string     { return filepath.Join(c.Dir, "node2") }
func (c Config) node2Data() string    { return filepath.Join(c.node2Dir(), "data") }
func (c Config) node2Run() string     { return filepath.Join(c.node2Dir(), "run") }
func (c Config) node2PIDFile() string { return filepath.Join(c.node2Dir(), "k3s.pid") }
func (c Config) node2Log() string     { return filepath.Join(c.node2Dir(), "k3s.log") }
func (c Config) node2CNIConf() string { return filepath.Join(c.node2Dir(), "cni", "net.d") }
func (c Config) node2CNIIPAM() string { return filepath.Join(c.node2Dir(), "cni", "ipam") }

// node2Netns is the file node 2's network namespace is bound to. Not under
// /run/netns: `ip netns add` makes /run/netns a mount of its own, which
// hides the server's pod namespaces mounted there before it.
func (c Config) node2Netns() string { return filepath.Join(c.node2Dir(), "netns") }

// node2ContainerdSock is node 2's containerd, reached from the host: its
// /run/k3s is node2/run.
func (c Config) node2ContainerdSock() string {
	return filepath.Join(c.node2Run(), "containerd", "containerd.sock")
}

// node2Binds are node 2's private folders and where its mount namespace
// puts them.
func (c Config) node2Binds() [][2]string {
	return [][2]string{
		{c.node2Run(), "/run/k3s"},
		{filepath.Join(c.node2Dir(), "kubelet"), "/var/lib/kubelet"},
		{filepath.Join(c.node2Dir(), "etc-node"), "/etc/rancher/node"},
		{filepath.Join(c.node2Dir(), "log"), "/var/log"},
	}
}

// node2Running reports whether node 2's k3s agent runs.
func node2Running(cfg Config) bool {
	return processAlive(readPID(cfg.node2PIDFile()), cfg.k3sBin())
}

// upNode2 starts node 2 and waits until it is Ready with the pod range its
// bridge hands out, or reuses it when it runs. The server must be healthy.
func upNode2(ctx context.Context, cfg Config, serverIP netip.Addr) error {
	if node2Running(cfg) {
		cfg.progressf("node 2 already running (pid %d)", readPID(cfg.node2PIDFile()))
		return waitNode2(ctx, cfg, readPID(cfg.node2PIDFile()), time.Time{}, nil)
	}
	// A node 2 that died leaves its shims, namespace and cgroups: clear them.
	cleanupNode2(ctx, cfg)
	if err := writeNode2Files(cfg); err != nil {
		return err
	}
	if err := setupNode2Network(ctx, cfg); err != nil {
		return fmt.Errorf("node 2's network: %w", err)
	}
	if err := makeNode2Cgroups(); err != nil {
		return fmt.Errorf("node 2's cgroups: %w", err)
	}
	if err := claimNode2Range(ctx, cfg); err != nil {
		return err
	}
	start := time.Now()
	cmd, err := startNode2(cfg, serverIP)
	if err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	cfg.progressf("node 2 started (k3s agent, pid %d), log %s", cmd.Process.Pid, cfg.node2Log())
	if err := waitNode2(ctx, cfg, cmd.Process.Pid, start, exited); err != nil {
		return err
	}
	cfg.progressf("node 2 ready in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// writeNode2Files writes node 2's containerd template, CNI config and
// airgap images (hard links to the server's tarballs).
func writeNode2Files(cfg Config) error {
	for _, d := range []string{cfg.node2CNIConf(), cfg.node2CNIIPAM(),
		filepath.Join(cfg.node2Data(), "agent", "etc", "containerd"), filepath.Join(cfg.node2Data(), "agent", "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, b := range cfg.node2Binds() {
		for _, d := range b {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	files := map[string]string{
		filepath.Join(cfg.node2Data(), "agent", "etc", "containerd", "config.toml.tmpl"): fmt.Sprintf(containerdTemplate, cfg.cniBinDir(), cfg.node2CNIConf()),
		filepath.Join(cfg.node2CNIConf(), "10-tether-bridge.conflist"):                   fmt.Sprintf(cniConfig, cfg.node2CNIIPAM(), cfg.Node2PodCIDR.String()),
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	dst := filepath.Join(cfg.node2Data(), "agent", "images")
	for _, im := range Images() {
		target := filepath.Join(dst, im.File)
		_ = os.Remove(target)
		if err := os.Link(filepath.Join(cfg.imagesDir(), im.File), target); err != nil {
			return fmt.Errorf("stage %s for node 2: %w", im.File, err)
		}
	}
	return nil
}

// setupNode2Network creates node 2's network namespace, the veth pair and
// the routes between the nodes' pod ranges.
func setupNode2Network(ctx context.Context, cfg Config) error {
	ns := cfg.node2Netns()
	if err := os.WriteFile(ns, nil, 0o644); err != nil {
		return err
	}
	in := []string{"nsenter", "--net=" + ns, "--"}
	steps := [][]string{
		{"unshare", "--net=" + ns, "true"},
		// Made inside, its host end sent to this process's namespace.
		append(in, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", node2Veth, "netns", strconv.Itoa(os.Getpid())),
		{"ip", "addr", "add", node2HostAddr.String(), "dev", node2Veth},
		{"ip", "link", "set", node2Veth, "up"},
		append(in, "ip", "link", "set", "lo", "up"),
		append(in, "ip", "addr", "add", node2Addr.String(), "dev", "eth0"),
		append(in, "ip", "link", "set", "eth0", "up"),
		append(in, "ip", "route", "add", "default", "via", node2HostAddr.Addr().String()),
		{"ip", "route", "replace", cfg.Node2PodCIDR.String(), "via", node2Addr.Addr().String(), "dev", node2Veth},
		// A new namespace does not forward: node 2 routes between its
		// pods' bridge and eth0.
		append(in, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"),
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// cgroupHierarchies returns the mount points of the machine's cgroup
// hierarchies (one on cgroup v2, one per controller set on v1).
func cgroupHierarchies() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, unescapeMount(f[1]))
		}
	}
	return out
}

// makeNode2Cgroups creates node 2's kubelet cgroup root, which it requires
// to exist, in every hierarchy.
func makeNode2Cgroups() error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, node2Cgroup)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		// A v1 cpuset starts with no CPUs and memory nodes: give it the root's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil && filepath.Base(h) != "unified" {
					_ = os.WriteFile(filepath.Join(dir, f), v, 0o644)
				}
			}
		}
	}
	return nil
}

// removeNode2Cgroups removes node 2's cgroups, deepest first, trying again
// for up to 10 s while the processes just killed in them finish exiting; a
// cgroup with a process left in it stays (and Leftovers reports it).
func removeNode2Cgroups() {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		removeNode2CgroupsOnce()
		if len(node2Leftovers()) == 0 || time.Now().After(deadline) {
			return
		}
	}
}

func removeNode2CgroupsOnce() {
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, node2Cgroup)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

// startNode2 starts node 2's k3s agent in its namespaces: nsenter joins the
// network namespace, unshare makes a mount namespace (slave: the host's
// unmounts still reach it, its own mounts stay inside) where the shell
// binds node 2's folders, then execs k3s, so the PID is k3s's.
func startNode2(cfg Config, serverIP netip.Addr) (*exec.Cmd, error) {
	if err := rotateLog(cfg.node2Log(), keptLogs); err != nil {
		return nil, fmt.Errorf("keep node 2's previous log: %w", err)
	}
	logf, err := os.OpenFile(cfg.node2Log(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	token, err := os.ReadFile(filepath.Join(cfg.dataDir(), "server", "node-token"))
	if err != nil {
		return nil, fmt.Errorf("the server's join token: %w", err)
	}
	script := `set -e
while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done
shift
exec "$@"`
	args := []string{"--net=" + cfg.node2Netns(), "--", "unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", script, "sh"}
	for _, b := range cfg.node2Binds() {
		args = append(args, b[0], b[1])
	}
	args = append(args, "--", cfg.k3sBin(), "agent",
		"--server", "https://"+net.JoinHostPort(serverIP.String(), strconv.Itoa(cfg.APIPort)),
		"--data-dir", cfg.node2Data(),
		"--node-name", cfg.Node2Name,
		"--node-ip", node2Addr.Addr().String(),
		"--kubelet-arg", "cgroup-root=/"+node2Cgroup,
		"--pause-image", PauseImage,
		"--resolv-conf", filepath.Join(cfg.etcDir(), "resolv.conf"),
		"--private-registry", filepath.Join(cfg.etcDir(), "registries.yaml"),
		"--disable-default-registry-endpoint",
	)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		"K3S_TOKEN="+strings.TrimSpace(string(token)),
		"PATH="+cfg.binDir()+":"+cfg.cniBinDir()+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node 2: %w", err)
	}
	if err := os.WriteFile(cfg.node2PIDFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	return cmd, nil
}

// waitNode2 waits until node 2 is Ready, its kubelet renewed its lease
// after since, and it has the pod range its bridge hands out.
func waitNode2(ctx context.Context, cfg Config, pid int, since time.Time, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	start := time.Now()
	lastReport := start // the first report after 5 s: the agent is still being exec'd at first
	for {
		problem := checkNode2(ctx, cfg, since)
		if problem == "" {
			return nil
		}
		if exited == nil && !processAlive(pid, cfg.k3sBin()) {
			return fmt.Errorf("node 2's k3s agent (pid %d) is gone; last log lines of %s:\n%s", pid, cfg.node2Log(), tail(cfg.node2Log(), 30))
		}
		if time.Since(lastReport) >= 5*time.Second {
			cfg.progressf("waiting for node 2: %s (%s)", problem, time.Since(start).Round(time.Second))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node 2 not ready after %s: %s; last log lines of %s:\n%s", StartTimeout, problem, cfg.node2Log(), tail(cfg.node2Log(), 30))
		case err := <-exited:
			return fmt.Errorf("node 2's k3s agent exited (%v); last log lines of %s:\n%s", err, cfg.node2Log(), tail(cfg.node2Log(), 30))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkNode2 returns what is wrong with node 2, or "".
func checkNode2(ctx context.Context, cfg Config, since time.Time) string {
	since = since.Truncate(time.Second)
	if !node2Running(cfg) {
		return "its k3s agent is not running"
	}
	cs, err := Clientset(cfg)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, cfg.Node2Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("node %s: %v", cfg.Node2Name, err)
	}
	if node.Spec.PodCIDR != "" && node.Spec.PodCIDR != cfg.Node2PodCIDR.String() {
		// Its bridge hands out Node2PodCIDR and the host routes only that.
		return fmt.Sprintf("node %s was given pod range %s, its bridge and the host's route use %s (delete the node object and restart it)",
			cfg.Node2Name, node.Spec.PodCIDR, cfg.Node2PodCIDR)
	}
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	}
	if !ready {
		return "not Ready"
	}
	if node.Spec.PodCIDR == "" {
		return "no pod range yet"
	}
	// Its kubelet renews its lease every 10 s, but posts its Ready
	// condition only on a change or every 5 min: the lease tells that it
	// reported since (to a restarted server, or after its own start).
	lease, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, cfg.Node2Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("its lease: %v", err)
	}
	if lease.Spec.RenewTime == nil || lease.Spec.RenewTime.Time.Before(since) {
		return "its kubelet has not reported since " + since.Format("15:04:05")
	}
	return ""
}

// stopNode2 stops node 2's k3s agent (SIGTERM, then SIGKILL after 30 s).
// Its pods' shims outlive it, as the server's do.
func stopNode2(cfg Config) { stopK3sProcess(cfg, cfg.node2PIDFile(), "node 2 (k3s agent)") }

// cleanupNode2 removes node 2's shims (a dead agent leaves its pods
// running), namespace, veth (and with it the route to its pods) and cgroups.
func cleanupNode2(ctx context.Context, cfg Config) {
	killNode2Shims(cfg)
	_ = unmount(cfg.node2Netns())
	_ = os.Remove(cfg.node2Netns())
	if _, err := net.InterfaceByName(node2Veth); err == nil {
		_, _ = run(ctx, "ip", "link", "delete", node2Veth)
	}
	removeNode2Cgroups()
	_ = os.Remove(cfg.node2PIDFile())
}

// node2Leftovers lists what of node 2 is still on the host.
// (The mount of its network namespace is among the mounts Leftovers lists.)
func node2Leftovers() []string {
	var left []string
	if _, err := net.InterfaceByName(node2Veth); err == nil {
		left = append(left, "veth "+node2Veth)
	}
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, node2Cgroup)); err == nil {
			left = append(left, "cgroup "+filepath.Join(h, node2Cgroup))
		}
	}
	return left
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// forgetNode2 deletes node 2's Node object when it is there but node 2 no
// longer runs (a one-node start after a two-node one), so the cluster
// has the nodes that run and nothing waits for a node that never comes.
func forgetNode2(ctx context.Context, cfg Config) error {
	cs, err := Clientset(cfg)
	if err != nil {
		return err
	}
	err = cs.CoreV1().Nodes().Delete(ctx, cfg.Node2Name, metav1.DeleteOptions{})
	if err == nil {
		cfg.progressf("removed node %s (not running) from the cluster", cfg.Node2Name)
		return nil
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("remove node %s (not running): %w", cfg.Node2Name, err)
}

// claimNode2Range creates node 2's Node object with Node2PodCIDR set,
// before its agent registers: its bridge and the host's route use that
// range, and the controller's own choice is not always the next free one
// (on a fresh server it once lost 10.42.1.0/24 to a failed retry for the
// first node and gave node 2 10.42.2.0/24). The controller takes a range
// already set as taken, and the kubelet adopts an object of its name. An
// object left with another range is replaced.
func claimNode2Range(ctx context.Context, cfg Config) error {
	cs, err := Clientset(cfg)
	if err != nil {
		return err
	}
	want := cfg.Node2PodCIDR.String()
	n, err := cs.CoreV1().Nodes().Get(ctx, cfg.Node2Name, metav1.GetOptions{})
	switch {
	case err == nil && n.Spec.PodCIDR == want && len(n.Status.Addresses) > 0:
		return nil
	case err == nil && n.Spec.PodCIDR == want:
		return setNode2Addresses(ctx, cs, cfg, n)
	case err == nil:
		cfg.progressf("node %s has pod range %s, its bridge uses %s: replacing its object", cfg.Node2Name, n.Spec.PodCIDR, want)
		if err := cs.CoreV1().Nodes().Delete(ctx, cfg.Node2Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove node %s: %w", cfg.Node2Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Nodes().Get(ctx, cfg.Node2Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return fmt.Errorf("node %s still there a minute after its removal", cfg.Node2Name)
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("node %s: %w", cfg.Node2Name, err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.Node2Name}, Spec: corev1.NodeSpec{PodCIDR: want, PodCIDRs: []string{want}}}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("register node %s with pod range %s: %w", cfg.Node2Name, want, err)
	}
	return setNode2Addresses(ctx, cs, cfg, created)
}

// setNode2Addresses gives node 2's object its addresses, as its kubelet
// will post them: k3s's policy controller reads the node's IPv4 address
// at its start, before the kubelet's first status, and exits without one.
func setNode2Addresses(ctx context.Context, cs kubernetes.Interface, cfg Config, n *corev1.Node) error {
	// A controller may change the new object first: read it again then.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: node2Addr.Addr().String()},
			{Type: corev1.NodeHostName, Address: cfg.Node2Name}}
		_, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := cs.CoreV1().Nodes().Get(ctx, cfg.Node2Name, metav1.GetOptions{}); gerr == nil {
				n = fresh
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set node %s's address: %w", cfg.Node2Name, err)
	}
	return nil
}

// killNode2Shims kills the container shims (and their containers) in node
// 2's network namespace, and waits until they are gone.
func killNode2Shims(cfg Config) {
	var st syscall.Stat_t
	if err := syscall.Stat(cfg.node2Netns(), &st); err != nil {
		return
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	inNode2 := func(pid int) bool {
		got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		return err == nil && got == want
	}
	var shims []int
	for _, pid := range processesRunning(cfg.shimBin()) {
		if inNode2(pid) {
			shims = append(shims, pid)
			for _, p := range append([]int{pid}, descendants(pid)...) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range shims {
		for processAlive(pid, cfg.shimBin()) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
