//go:build integration

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runUser is the unprivileged user the namespace mode is tested as: no
// sudo, no capability, no group of note.
const runUser = "tether-run-test"

// TestRunAsUnprivilegedUser: `tether run` in the namespace mode started by a
// user with no privilege at all: the CLI, the daemon it starts, the
// namespaces and CMD all run as that user, CMD reaches a Service by its
// short name from the pod, and the machine's interfaces, default route and
// resolv.conf are as they were.
func TestRunAsUnprivilegedUser(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	uid, gid := ensureUser(t, runUser)
	ensureTUN(t)

	home, err := os.MkdirTemp("", "tether-run-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	bin := filepath.Join(home, "tether")
	kubeconfig := filepath.Join(home, "kubeconfig")
	runtimeDir := filepath.Join(home, "run")
	copyFile(t, tetherBinary(t), bin, 0o755)
	copyFile(t, e.kubeconfig, kubeconfig, 0o600)
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, kubeconfig, runtimeDir} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	asUser := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runtimeDir, "PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + kubeconfig}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = home
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run %v as %s: %v", args, runUser, err)
		}
		return stdout.String(), stderr.String(), code
	}
	t.Cleanup(func() { asUser("quit") })

	before := machineNetwork(t)
	args := []string{"run", "deploy/orders", "-n", e.ns, "--network", "namespace"}
	if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
		args = append(args, "--agent-image", im)
	}
	script := `echo "uid=$(id -u)"; curl -sS -m 20 --fail http://orders/whoami && echo; exit 7`
	out, errOut, code := asUser(append(args, "--", "sh", "-c", script)...)
	t.Logf("as %s: exit %d\nstdout: %s\nstderr: %s", runUser, code, out, errOut)
	if code != 7 {
		t.Errorf("exit %d, want CMD's 7", code)
	}
	if want := "uid=" + strconv.Itoa(uid); !strings.Contains(out, want) {
		t.Errorf("CMD did not run as %s (%s): %q", runUser, want, out)
	}
	if !strings.Contains(out, pod) {
		t.Errorf("CMD did not reach orders by its short name (want the pod %s to answer): %q", pod, out)
	}
	if after := machineNetwork(t); after != before {
		t.Errorf("the machine's network changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// ensureUser returns the uid and gid of name, creating it as a system user
// with no shell and no home when it does not exist.
func ensureUser(t *testing.T, name string) (int, int) {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// ensureTUN gives /dev/net/tun the mode 0666 Debian and Ubuntu ship it
// with, when this machine's is stricter.
func ensureTUN(t *testing.T) {
	t.Helper()
	st, err := os.Stat("/dev/net/tun")
	if err != nil {
		t.Fatalf("this machine has no /dev/net/tun (modprobe tun): %v", err)
	}
	if st.Mode().Perm() != 0o666 {
		if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// machineNetwork is what tether run must not change on the machine: the
// interfaces other than the pods' veths (the cluster adds and removes
// those), the default routes and resolv.conf.
func machineNetwork(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	for _, l := range strings.Split(string(links), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[1], "veth") {
			continue
		}
		b.WriteString(f[1] + "\n")
	}
	for _, v := range []string{"-4", "-6"} {
		r, err := exec.Command("ip", v, "route", "show", "default").Output()
		if err != nil {
			t.Fatalf("ip route: %v", err)
		}
		b.Write(r)
	}
	rc, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	b.Write(rc)
	return b.String()
}
