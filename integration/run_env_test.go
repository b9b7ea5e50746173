//go:build integration && linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devUser runs tether as a user without root, as a developer would: the
// namespace mode is for such users (no setuid helper, no capability).
type devUser struct {
	t                           *testing.T
	uid, gid                    int
	bin, home, kubeconfig, path string
}

// asDevUser returns the unprivileged user of TestRunAsUnprivilegedUser
// (runUser) with its own copy of tether and of the kubeconfig, and its own
// daemon (quit when the test ends). /dev/net/tun gets the 0666 mode Debian
// and Ubuntu ship it with.
func (e *env) asDevUser() *devUser {
	t := e.t
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("creating the unprivileged test user needs root")
	}
	uid, gid := ensureUser(t, runUser)
	ensureTUN(t)
	d := &devUser{t: t, uid: uid, gid: gid, path: "/usr/local/bin:/usr/bin:/bin"}
	dir, err := os.MkdirTemp("", "tether-it-dev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.bin = filepath.Join(dir, "tether")
	d.home = filepath.Join(dir, "home")
	d.kubeconfig = filepath.Join(d.home, "kubeconfig")
	copyFile(t, tetherBinary(t), d.bin, 0o755)
	for _, p := range []string{d.home, filepath.Join(d.home, "run")} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, e.kubeconfig, d.kubeconfig, 0o600)
	for _, p := range []string{d.home, filepath.Join(d.home, "run"), d.kubeconfig} {
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { d.tether("quit", "--kubeconfig", d.kubeconfig) })
	return d
}

// dir returns a new folder of the user's.
func (d *devUser) dir(name string) string {
	p := filepath.Join(d.home, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Chown(p, d.uid, d.gid); err != nil {
		d.t.Fatal(err)
	}
	return p
}

// env is the user's environment: what CMD starts from.
func (d *devUser) env() []string {
	return []string{"PATH=" + d.path, "HOME=" + d.home, "TMPDIR=" + d.home,
		"XDG_RUNTIME_DIR=" + filepath.Join(d.home, "run"), "KUBECONFIG=" + d.kubeconfig}
}

// command is tether with args, to run as the user.
func (d *devUser) command(args ...string) *exec.Cmd {
	cmd := exec.Command(d.bin, args...)
	cmd.Dir = d.home
	cmd.Env = d.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(d.uid), Gid: uint32(d.gid)}}
	return cmd
}

func (d *devUser) tether(args ...string) (string, string, int) {
	d.t.Helper()
	cmd := d.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			d.t.Fatalf("run %s as %s: %v", d.bin, runUser, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// nulEnv parses `env -0`.
func nulEnv(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// wantPodEnv checks that got has every variable of the pod's process
// (oracle), except PATH and HOME, which stay this machine's (local).
func wantPodEnv(t *testing.T, mode string, oracle, got, local map[string]string) {
	t.Helper()
	for k, v := range oracle {
		want, fromPod := v, true
		if k == "PATH" || k == "HOME" {
			want, fromPod = local[k], false
		}
		if g, ok := got[k]; !ok || g != want {
			t.Errorf("%s: CMD's %s = %q (set %v), want %q (from the pod: %v)", mode, k, g, ok, want, fromPod)
		}
	}
	for _, k := range []string{"TOKEN", "S_token", "DB_HOST", "POD"} { // Secret-backed, ConfigMap, fieldRef
		if _, ok := oracle[k]; !ok {
			t.Errorf("the pod's process has no %s: the test pod changed", k)
		}
	}
}

// TestRunEnvAndFiles: `tether run POD --env` gives CMD the variables
// `tether env -o json` gives (a Secret-backed one included), in the proxy
// mode and, run by a user without root, in the namespace mode; there,
// with --files DIR, CMD reads the service account's namespace and a
// ConfigMap's file at their real paths while the machine's own paths stay
// as they were, $TETHER_ROOT is DIR and every file under it is 0600.
func TestRunEnvAndFiles(t *testing.T) {
	e := newEnv(t)
	pod := e.envPod()

	// Bad input: exit 2 with a message, and nothing added to the pod.
	for _, tc := range []struct {
		target string
		flags  []string
		want   string
	}{
		{"", []string{"--env"}, "--env takes a target's container: name it before --"},
		{"", []string{"--files", t.TempDir()}, "--files takes a target's container"},
		{"pod/" + pod.Name, []string{"--files", "/etc/hostname/pod-files"}, "/etc/hostname is not a folder"},
		{"pod/" + pod.Name, []string{"--env", "--network", "vpn"}, `--network "vpn"`},
	} {
		out, errOut, code := e.run(tc.target, tc.flags, "true")
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("run %s %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.target, tc.flags, code, out, errOut, tc.want)
		}
	}
	e.wantEphemeral(pod.Name, 0, "after bad input")
	oracle := jsonObject(t, e.mustTether(agentImage("env", "pod/"+pod.Name, "-o", "json")...))

	// Proxy mode, as root: CMD starts from this process's environment.
	out, errOut, code := e.run("pod/"+pod.Name, []string{"--env"}, "env", "-0")
	if code != 0 {
		t.Fatalf("run --env --network proxy: exit %d: %s", code, errOut)
	}
	local := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	wantPodEnv(t, "proxy", oracle, nulEnv(out), local)
	if !strings.Contains(errOut, "kept this machine's PATH, HOME") {
		t.Errorf("stderr does not say which variables stay the machine's:\n%s", errOut)
	}

	// Namespace mode, as a developer without root, with --files.
	d := e.asDevUser()
	root := filepath.Join(d.dir("work"), "pod-files") // made by tether
	paths := []string{"/var/run/secrets/kubernetes.io/serviceaccount/namespace", "/etc/app/config.yaml", "/etc/creds/nested/token", "/etc/single.yaml"}
	before, beforeNet := hostFiles(paths), machineNetwork(t)
	// Python, not sh: a shell drops the variables whose names are no
	// shell names (config.yaml, 1bad) from the environment of what it runs.
	list, _ := json.Marshal(paths)
	py := `import json, os
files = {}
for p in ` + string(list) + `:
    try:
        files[p] = open(p).read()
    except OSError as e:
        files[p] = "MISSING: %s" % e
print(json.dumps({"env": dict(os.environ), "files": files}))`
	args := append(agentImage("run", "pod/"+pod.Name, "--kubeconfig", d.kubeconfig, "-n", e.ns, "--network", "namespace", "--env", "--files", root),
		"--", "/usr/bin/python3", "-c", py)
	out, errOut, code = d.tether(args...)
	t.Logf("as %s: tether %v: exit %d\nstderr: %s", runUser, args, code, errOut)
	if code != 0 {
		t.Fatalf("run --env --files --network namespace: exit %d", code)
	}
	var seen struct {
		Env   map[string]string
		Files map[string]string
	}
	if err := json.Unmarshal([]byte(out), &seen); err != nil {
		t.Fatalf("CMD printed %q: %v", out, err)
	}
	got := seen.Env
	wantPodEnv(t, "namespace", oracle, got, map[string]string{"PATH": d.path, "HOME": d.home})
	if got["TETHER_ROOT"] != root || got["TETHER_NETWORK"] != "namespace" {
		t.Errorf("TETHER_ROOT=%q TETHER_NETWORK=%q, want %q and namespace", got["TETHER_ROOT"], got["TETHER_NETWORK"], root)
	}
	cfg := "a: 1\nb: \"two\"\n"
	for i, want := range []string{e.ns, cfg, "s3cr'et", cfg} {
		if seen.Files[paths[i]] != want {
			t.Errorf("CMD read %s: %q, want the pod's %q (read: %q)", paths[i], seen.Files[paths[i]], want, seen.Files)
		}
	}
	if after := hostFiles(paths); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the machine's own files changed: before %v, after %v", before, after)
	}
	if after := machineNetwork(t); after != beforeNet {
		t.Errorf("the machine's network changed:\nbefore:\n%s\nafter:\n%s", beforeNet, after)
	}
	n := 0
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if de.Type().IsRegular() {
			n++
			wantFileMode(t, p, 0o600)
		}
		return nil
	})
	if n == 0 {
		t.Errorf("--files wrote nothing under %s", root)
	}
}

// hostFiles says what the machine itself has at paths: content or absence.
func hostFiles(paths []string) map[string]string {
	m := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			m[p] = "absent: " + err.Error()
			continue
		}
		m[p] = string(b)
	}
	return m
}

// TestInterceptCommandEnv: `tether intercept W --port P --env -- CMD`
// gives CMD the intercepted pod's variables: its POD_NAME (a fieldRef) is
// the pod the run goes through, PATH stays the machine's.
func TestInterceptCommandEnv(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	port := freePort(t)
	out, errOut, code := e.tether(e.runArgs([]string{"intercept", "deploy/orders", "--port", fmt.Sprintf("http:%d", port)}, []string{"--env"},
		"sh", "-c", `echo "$POD_NAME|$TETHER_POD|$PATH"`)...)
	t.Logf("stderr: %s", errOut)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	parts := strings.Split(strings.TrimSpace(out), "|")
	if len(parts) != 3 || parts[0] == "" || parts[0] != parts[1] || parts[2] != os.Getenv("PATH") {
		t.Errorf("CMD printed %q: want POD_NAME = TETHER_POD (the intercepted pod's) and this machine's PATH", out)
	}
	if !strings.Contains(errOut, "left the intercept of deployment/orders") {
		t.Errorf("stderr does not say the intercept was left:\n%s", errOut)
	}
}

// TestInterceptJVMDebuggerFromHost is docs/run.md's IntelliJ IDEA pattern
// in the namespace mode, as a user without root: a JVM started under
// `tether intercept ... --env -- java -agentlib:jdwp=...address=127.0.0.1:P`
// waits for a debugger, which attaches from the machine's 127.0.0.1:P
// (the JDWP handshake), resumes it and detaches; the JVM runs to its end
// and the intercept is left. The pod's variables were read for it (the
// JVM does not print them: TestInterceptCommandEnv checks them).
func TestInterceptJVMDebuggerFromHost(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	d := e.asDevUser()
	jdwp, port := freePort(t), freePort(t)
	args := append(agentImage("intercept", "deploy/orders", "--kubeconfig", d.kubeconfig, "-n", e.ns, "--port", fmt.Sprintf("http:%d", port),
		"--network", "namespace", "--env"), "--", "/usr/bin/java",
		fmt.Sprintf("-agentlib:jdwp=transport=dt_socket,server=y,suspend=y,address=127.0.0.1:%d", jdwp), "-version")
	cmd := d.command(args...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		t.Logf("stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}()
	// The IDE's Remote JVM Debug: connect to the machine's loopback, shake
	// hands, resume the VM (JDWP VirtualMachine.Resume) and detach
	// (VirtualMachine.Dispose).
	var attached bool
	for start := time.Now(); time.Since(start) < 3*time.Minute && !attached; time.Sleep(200 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("tether ended (%v) before the debugger attached", err)
		default:
		}
		attached = jdwpAttach(fmt.Sprintf("127.0.0.1:%d", jdwp))
	}
	if !attached {
		t.Fatal("no JDWP handshake on the machine's 127.0.0.1 within 3 minutes")
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the JVM did not end after the debugger resumed it and detached")
	}
	if err != nil {
		t.Fatalf("tether: %v", err)
	}
	out := stdout.String() + stderr.String()
	for _, want := range []string{"Listening for transport dt_socket at address: " + strconv.Itoa(jdwp), "openjdk version",
		"in a network namespace of its own", "left the intercept of deployment/orders", "variables of pod orders-", "kept this machine's PATH"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// jdwpAttach does what a debugger does first at addr: the JDWP handshake,
// then VirtualMachine.Resume and VirtualMachine.Dispose, and reports
// whether the VM answered both.
func jdwpAttach(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hello := []byte("JDWP-Handshake")
	if _, err := c.Write(hello); err != nil {
		return false
	}
	buf := make([]byte, len(hello))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(hello) {
		return false
	}
	// A command packet: length, id, flags, command set, command. Events
	// (command packets from the VM, flags 0) may come before a reply
	// (flags 0x80).
	for id, cmd := range []byte{9, 6} { // Resume, Dispose (command set 1)
		pkt := []byte{0, 0, 0, 11, 0, 0, 0, byte(id + 1), 0, 1, cmd}
		if _, err := c.Write(pkt); err != nil {
			return false
		}
		for {
			head := make([]byte, 11)
			if _, err := io.ReadFull(c, head); err != nil {
				return false
			}
			n := int(head[0])<<24 | int(head[1])<<16 | int(head[2])<<8 | int(head[3])
			if n < 11 {
				return false
			}
			if _, err := io.CopyN(io.Discard, c, int64(n-11)); err != nil {
				return false
			}
			if head[8]&0x80 != 0 && head[7] == byte(id+1) {
				break // the reply to this command
			}
		}
	}
	return true
}
