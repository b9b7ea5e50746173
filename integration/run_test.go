//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/integration/demoapp"
)

// runArgs builds `tether run TARGET FLAGS... -- CMD...` with the test's
// kubeconfig, namespace and agent image before the --, in the proxy mode
// unless flags name one.
func (e *env) runArgs(verb []string, flags []string, cmd ...string) []string {
	args := append(append([]string{}, verb...), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
		args = append(args, "--agent-image", im)
	}
	if !slices.Contains(flags, "--network") {
		args = append(args, "--network", "proxy")
	}
	args = append(args, flags...)
	return append(append(args, "--"), cmd...)
}

// run runs `tether run target flags... -- cmd...` and returns stdout,
// stderr and the exit code.
func (e *env) run(target string, flags []string, cmd ...string) (string, string, int) {
	e.t.Helper()
	out, errOut, code := e.tether(e.runArgs([]string{"run", target}, flags, cmd...)...)
	e.t.Logf("tether run %s %v -- %v: exit %d\nstderr: %s", target, flags, cmd, code, errOut)
	return out, errOut, code
}

// demoBinary is the tether-demo binary (a static Go binary, CGO off), built
// by `make build` into $TETHER_BIN or built here.
func demoBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("TETHER_BIN"); dir != "" {
		return filepath.Join(dir, "tether-demo")
	}
	out := filepath.Join(t.TempDir(), "tether-demo")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/tether-demo")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tether-demo: %v\n%s", err, b)
	}
	return out
}

// runReachesCluster runs curl under `tether run deploy/orders flags...`:
// it must reach a Service by its short name, its FQDN, its ClusterIP and
// pod's IP, and return CMD's exit status; the progress line names the pod
// and, when path is set, the path.
func (e *env) runReachesCluster(pod *corev1.Pod, svc *corev1.Service, flags []string, path string) {
	e.t.Helper()
	urls := []string{
		"http://orders/whoami",
		"http://orders." + e.ns + ".svc.cluster.local/whoami",
		"http://" + svc.Spec.ClusterIP + "/whoami",
		"http://" + net.JoinHostPort(pod.Status.PodIP, "8080") + "/whoami",
	}
	script := "set -e\n"
	for _, u := range urls {
		script += fmt.Sprintf("curl -sS -m 20 --fail %s; echo\n", u)
	}
	script += "exit 7\n"
	out, errOut, code := e.run("deploy/orders", flags, "sh", "-c", script)
	if code != 7 {
		e.t.Fatalf("exit %d, want CMD's 7\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := strings.Count(out, pod.Name); got != len(urls) {
		e.t.Errorf("%d of %d requests answered by pod %s:\n%s", got, len(urls), pod.Name, out)
	}
	want := fmt.Sprintf("as if in pod %s (namespace %s", pod.Name, e.ns)
	if path != "" {
		want += ", " + path + ")"
	}
	if !strings.Contains(errOut, want) || !strings.Contains(errOut, "via proxy 127.0.0.1:") {
		e.t.Errorf("stderr does not say %q ... via proxy:\n%s", want, errOut)
	}
}

// TestRunProxyReachesTheCluster: curl, Python's urllib and a static Go
// binary under `tether run` reach a Service by its short name (the pod's
// search list), its FQDN, its ClusterIP and a pod IP; CMD's exit status
// is tether's.
func TestRunProxyReachesTheCluster(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), e.firstPod("orders"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.runReachesCluster(pod, svc, nil, "")

	t.Run("headless Service and the host's loopback", func(t *testing.T) {
		headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "orders-headless"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "orders"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
		if _, err := e.cs.CoreV1().Services(e.ns).Create(context.Background(), headless, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A server on this machine's loopback stays CMD's (NO_PROXY).
		local := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from the laptop") })}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go local.Serve(l)
		defer local.Close()
		var out, errOut string
		var code int
		// The headless Service's record appears once its endpoints exist.
		for range 20 {
			out, errOut, code = e.run("deploy/orders", []string{"-q"}, "sh", "-c",
				fmt.Sprintf("curl -sS -m 20 --fail http://orders-headless:8080/whoami && echo && curl -sS -m 5 --fail http://%s/", l.Addr()))
			if code == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if code != 0 || !strings.Contains(out, pod.Name) || !strings.HasSuffix(out, "from the laptop") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("python urllib", func(t *testing.T) {
		out, errOut, code := e.run("deploy/orders", []string{"-q"}, "python3", "-c",
			"import urllib.request; print(urllib.request.urlopen('http://orders/whoami', timeout=20).read().decode())")
		if code != 0 || !strings.Contains(out, pod.Name) {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if errOut != "" {
			t.Errorf("-q printed %q", errOut)
		}
	})

	t.Run("java through SOCKS5", func(t *testing.T) {
		// The JVM resolves names itself unless it leaves them to the proxy,
		// as HttpURLConnection does through SOCKS.
		src := filepath.Join(t.TempDir(), "Get.java")
		os.WriteFile(src, []byte(`public class Get {
    public static void main(String[] a) throws Exception {
        var c = (java.net.HttpURLConnection) new java.net.URI(a[0]).toURL().openConnection();
        c.setConnectTimeout(20000); c.setReadTimeout(20000);
        System.out.println(c.getResponseCode() + " " + new String(c.getInputStream().readAllBytes()));
    }
}`), 0o600)
		out, errOut, code := e.run("deploy/orders", []string{"-q"}, "java", src, "http://orders/whoami")
		if code != 0 || !strings.HasPrefix(out, "200 ") || !strings.Contains(out, pod.Name) {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("static Go binary, 10 MB each way, 200 connections", func(t *testing.T) {
		const size = 10 << 20
		demo := demoBinary(t)
		script := fmt.Sprintf("%[1]s upload http://orders %[2]d && %[1]s download 'http://orders/bytes?n=%[2]d' && %[1]s parallel http://orders/whoami 200",
			demo, size)
		out, errOut, code := e.run("deploy/orders", []string{"-q"}, "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		m := regexp.MustCompile(`sent (\d+) sha256 (\w+)`).FindStringSubmatch(out)
		if m == nil || !regexp.MustCompile(`"bytes":\s*`+m[1]+`\b`).MatchString(out) ||
			!regexp.MustCompile(`"sha256":\s*"`+m[2]+`"`).MatchString(out) {
			t.Errorf("upload: the pod did not receive what CMD sent:\n%s", out)
		}
		want := fmt.Sprintf("received %d sha256 %s served-by %s", size, localBytesSum(t, size), pod.Name)
		if !strings.Contains(out, want) {
			t.Errorf("download: want %q in\n%s", want, out)
		}
		if want := fmt.Sprintf("ok 200 of 200 served-by map[%s:200]", pod.Name); !strings.Contains(out, want) {
			t.Errorf("parallel: want %q in\n%s", want, out)
		}
	})

	t.Run("forward for a client that ignores proxies", func(t *testing.T) {
		port := freePort(t)
		out, errOut, code := e.run("deploy/orders", []string{"--forward", fmt.Sprintf("svc/orders:http:%d", port)},
			"curl", "-sS", "-m", "20", "--fail", "--noproxy", "*", fmt.Sprintf("http://127.0.0.1:%d/whoami", port))
		if code != 0 || !strings.Contains(out, pod.Name) {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}

// localBytesSum is the SHA-256 of what the demo's /bytes?n=size sends.
func localBytesSum(t *testing.T, size int) string {
	srv := &http.Server{Handler: demoapp.NewServer("local").Handler()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	resp, err := http.Get(fmt.Sprintf("http://%s/bytes?n=%d", l.Addr(), size))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil))
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunNetworkPolicyDeniesCMD: a policy denying the pod's egress denies
// CMD's connections too, which fail (the proxy answers 502/504) instead
// of hanging until the client's own timeout.
func TestRunNetworkPolicyDeniesCMD(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	url := "http://" + svc.Spec.ClusterIP + "/whoami"
	curl := []string{"curl", "-sS", "-m", "60", "-o", "/dev/null", "-w", "%{http_code}", url}
	if out, _, code := e.run("pod/"+client, []string{"-q"}, curl...); code != 0 || out != "200" {
		t.Fatalf("before the policy: exit %d, status %q", code, out)
	}
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(context.Background(), deny, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out string
	var code int
	for range 30 {
		out, _, code = e.run("pod/"+client, []string{"-q"}, curl...)
		if out != "200" {
			break
		}
		time.Sleep(time.Second)
	}
	if out == "200" {
		t.Fatal("the egress policy never blocked CMD's connection")
	}
	// curl's exit 28 would mean it waited for its own 60 s timeout.
	if code == 28 || (out != "502" && out != "504") {
		t.Errorf("blocked connection: curl exit %d, status %q; want a prompt 502 or 504 from the proxy", code, out)
	}
}

// TestRunSignalReachesCMD: SIGINT to tether reaches CMD, which ends in its
// own way; tether exits with CMD's status once CMD is done.
func TestRunSignalReachesCMD(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	cmd := exec.Command(tetherBinary(t), e.runArgs([]string{"run", "deploy/orders"}, []string{"-q"},
		"sh", "-c", fmt.Sprintf(`trap 'echo got-int; exit 42' INT; touch %s; while :; do sleep 0.1; done`, ready))...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	var stdout syncBuffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("CMD did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := waitFor(t, cmd, time.Minute)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 42 || !strings.Contains(stdout.String(), "got-int") {
		t.Errorf("exit %d, stdout %q; want CMD's trap to run and its 42", code, stdout.String())
	}
}

// TestRunBadInput: each mistake exits 2 with a message, and no agent is
// added to any pod.
func TestRunBadInput(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown workload", e.runArgs([]string{"run", "deploy/nope"}, nil, "true"), "nope"},
		{"unknown pod", e.runArgs([]string{"run", "pod/nope"}, nil, "true"), `no pod "nope"`},
		{"unknown container", e.runArgs([]string{"run", "pod/" + pod}, []string{"-c", "nope"}, "true"), `has no container "nope"; containers: orders`},
		{"CMD not found", e.runArgs([]string{"run", "deploy/orders"}, nil, "no-such-program-tether"), `CMD "no-such-program-tether"`},
		{"no -- before CMD", []string{"run", "deploy/orders", "--kubeconfig", e.kubeconfig, "-n", e.ns, "true"}, "put -- before the command"},
		{"unknown network mode", e.runArgs([]string{"run", "deploy/orders"}, []string{"--network", "vpn"}, "true"), `--network "vpn": want proxy or namespace`},
		{"unknown Service to forward", e.runArgs([]string{"run", "deploy/orders"}, []string{"--forward", "svc/nope:80"}, "true"), `no Service "nope"`},
		{"Service port to forward", e.runArgs([]string{"run", "deploy/orders"}, []string{"--forward", "svc/orders:81"}, "true"), "has no port 81; ports: 80/http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := e.tether(tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Spec.EphemeralContainers); n != 0 {
		t.Errorf("bad input added %d ephemeral containers to pod %s", n, pod)
	}
}

// TestInterceptCommand: `tether intercept ... -- CMD` serves the Service's
// callers from CMD while it runs, CMD reaches the cluster through the
// intercepted pod; Ctrl-C (SIGINT) reaches CMD first, and the intercept is
// gone once CMD exited.
func TestInterceptCommand(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	port := freePort(t)
	demo := demoBinary(t)
	// CMD serves as "laptop", checks that it reaches the cluster by name,
	// and exits 3 on SIGINT.
	script := fmt.Sprintf(`%[1]s serve 127.0.0.1:%[2]d & pid=$!
trap 'kill $pid; exit 3' INT
curl -sS -m 20 --fail http://orders/healthz >/dev/null || { kill $pid; exit 9; }
while :; do sleep 0.1; done`, demo, port)
	cmd := exec.Command(tetherBinary(t), e.runArgs([]string{"intercept", "deploy/orders", "--port", fmt.Sprintf("http:%d", port)}, nil,
		"sh", "-c", script)...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	cmd.Env = append(cmd.Env, "POD_NAME="+localName()) // the demo server's name in X-Served-By
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := "http://orders." + e.ns + ".svc.cluster.local/whoami"
	var out string
	for start := time.Now(); time.Since(start) < 3*time.Minute; time.Sleep(500 * time.Millisecond) {
		if strings.Contains(stderr.String(), "running sh -c") {
			if out, _ = e.exec(client, "/tether-demo", "get", url); strings.Contains(out, "X-Served-By: "+localName()) {
				break
			}
		}
	}
	if !strings.Contains(out, "X-Served-By: "+localName()) {
		t.Fatalf("the Service's caller was never served by CMD: %q\nstderr: %s", out, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := waitFor(t, cmd, time.Minute)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 3 {
		t.Fatalf("exit %d, want CMD's 3\nstderr: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "left the intercept of deployment/orders") {
		t.Errorf("stderr does not say the intercept was left:\n%s", stderr.String())
	}
	status, _, _ := e.tether("status", "--kubeconfig", e.kubeconfig)
	if !strings.Contains(status, "No intercepts.") {
		t.Errorf("an intercept is left after CMD exited:\n%s", status)
	}
	if out, _ := e.exec(client, "/tether-demo", "get", url); strings.Contains(out, "X-Served-By: "+localName()) || !strings.Contains(out, "200") {
		t.Errorf("after CMD exited the app does not answer: %s", out)
	}
	// CMD's connections went through the intercept's sidecar: no
	// inspection agent was added.
	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if n := len(p.Spec.EphemeralContainers); n > 0 {
			t.Errorf("pod %s got %d ephemeral containers: the run did not reuse the intercept's agent", p.Name, n)
		}
	}
}

// localName is the name CMD's demo server reports in X-Served-By.
func localName() string { return "laptop-cmd" }

// waitFor waits for cmd to exit, and fails the test (killing cmd) when it
// is still running after d.
func waitFor(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s still ran %s after it was told to end", cmd.Args[0], d)
		return nil
	}
}

// TestRunDaemonKilled: when the daemon dies mid-run, CMD's open and new
// connections to the cluster fail with errors instead of hanging, and
// tether still returns CMD's status.
func TestRunDaemonKilled(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	dir := t.TempDir()
	ready, goOn := filepath.Join(dir, "ready"), filepath.Join(dir, "go")
	// An endless download (rate-limited, so that the socket's buffer, which
	// curl drains before it sees the end, stays small) is open while the
	// daemon dies; a new request follows. curl's exit 28 would mean it hung
	// until its own timeout.
	script := fmt.Sprintf(`curl -sS -m 20 --fail http://orders/healthz >/dev/null || exit 9
curl -sS -m 120 -o /dev/null --limit-rate 5M 'http://orders/bytes?n=100000000000' 2>/dev/null & dl=$!
sleep 1; touch %[1]s
while [ ! -f %[2]s ]; do sleep 0.1; done
curl -sS -m 120 -o /dev/null http://orders/whoami 2>/dev/null; echo "new $?"
wait $dl; echo "open $?"
exit 4`, ready, goOn)
	cmd := exec.Command(tetherBinary(t), e.runArgs([]string{"run", "deploy/orders"}, []string{"-q"}, "sh", "-c", script)...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("CMD did not start: %s", stderr.String())
		}
	}
	status, _, _ := e.tether("status", "--kubeconfig", e.kubeconfig, "-o", "json")
	m := regexp.MustCompile(`"pid":\s*(\d+)`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("no daemon pid in %s", status)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(goOn, nil, 0o600)
	killed := time.Now()
	err := waitFor(t, cmd, 90*time.Second)
	t.Logf("CMD and tether ended %s after the daemon was killed", time.Since(killed).Round(time.Millisecond))
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	out := stdout.String()
	if code != 4 {
		t.Errorf("exit %d, want CMD's 4\nstdout: %s\nstderr: %s", code, out, stderr.String())
	}
	if !strings.Contains(out, "new 7") {
		t.Errorf("a new connection after the daemon died: %q; want curl's 7 (refused at once)", out)
	}
	if strings.Contains(out, "open 28") || strings.Contains(out, "open 0") || !strings.Contains(out, "open ") {
		t.Errorf("the open download: %q; want an error, not a hang (28) nor a success", out)
	}
	if !strings.Contains(stderr.String(), "the run ended while") {
		t.Errorf("tether did not say the run ended: %s", stderr.String())
	}
}

// TestRunWithoutTarget: with no workload named, CMD's connections leave
// from the namespace's gateway, which `tether rollback` removes.
func TestRunWithoutTarget(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	args := []string{"run", "--kubeconfig", e.kubeconfig, "-n", e.ns, "--network", "proxy"}
	if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
		args = append(args, "--agent-image", im)
	}
	args = append(args, "--", "sh", "-c", "curl -sS -m 20 --fail http://orders/whoami && curl -sS -m 20 --fail http://"+svc.Spec.ClusterIP+"/whoami")
	out, errOut, code := e.tether(args...)
	if code != 0 || strings.Count(out, `"name"`) != 2 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "as if in pod tether-gateway-") {
		t.Errorf("stderr does not name the gateway's pod:\n%s", errOut)
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Get(context.Background(), "tether-gateway", metav1.GetOptions{}); err != nil {
		t.Fatalf("no gateway deployment: %v", err)
	}
	e.mustTether("rollback", "deployment/tether-gateway")
	if _, err := e.cs.AppsV1().Deployments(e.ns).Get(context.Background(), "tether-gateway", metav1.GetOptions{}); err == nil {
		t.Error("the gateway is still there after rollback")
	}
}

// TestRunGRPCClient: grpc-go's greeter client under `tether run` reaches
// a Service by its short name (grpc-go honours HTTPS_PROXY with CONNECT,
// leaving the name to the proxy).
func TestRunGRPCClient(t *testing.T) {
	e := newEnv(t)
	e.deployGreeter()
	bins := greeterBinaries(t)
	var out, errOut string
	var code int
	for range 10 { // the Service may need a moment to be served
		out, errOut, code = e.run("deploy/greeter", []string{"-q"}, filepath.Join(bins, greeterClient), "-addr", fmt.Sprintf("greeter:%d", greeterPort), "-name", "run")
		if code == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	if code != 0 || !strings.Contains(out+errOut, "Greeting: Hello run") { // the client logs it on stderr
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestRunNamespaceMode: where the namespace mode can run (this machine),
// it is the default: CMD reaches the cluster by name with no proxy
// variables, its resolv.conf is the pod's, and its exit status is
// tether's. cli/internal/netns's own tests cover the mode in depth.
func TestRunNamespaceMode(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	script := `[ -z "$HTTP_PROXY" ] || exit 9
curl -sS -m 20 --fail http://orders/whoami && grep -q "^search ` + e.ns + `.svc.cluster.local" /etc/resolv.conf && echo "net=$TETHER_NETWORK"; exit 5`
	for _, flags := range [][]string{{"--network", "namespace"}, {"--network", ""}} {
		args := append([]string{"run", "deploy/orders", "--kubeconfig", e.kubeconfig, "-n", e.ns}, flags...)
		if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
			args = append(args, "--agent-image", im)
		}
		out, errOut, code := e.tether(append(args, "--", "sh", "-c", script)...)
		if code != 5 || !strings.Contains(out, pod) || !strings.Contains(out, "net=namespace") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", flags, code, out, errOut)
		}
		if !strings.Contains(errOut, "in a network namespace of its own") {
			t.Errorf("%v: stderr does not say the mode: %s", flags, errOut)
		}
	}
}
