//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startCapture runs `tether capture` in the background and returns once it
// captures; wait returns its exit code and stderr.
func (e *env) startCapture(args ...string) (wait func() (int, string)) {
	e.t.Helper()
	wait, _ = e.startCapturing("capture", args...)
	return wait
}

// startCaptureCmd is startCapture that also returns the process, to signal.
func (e *env) startCaptureCmd(args ...string) (func() (int, string), *exec.Cmd) {
	e.t.Helper()
	var cmd *exec.Cmd
	wait, _ := e.startCapturingWith("capture", func(c *exec.Cmd) { cmd = c }, args...)
	return wait, cmd
}

// startCapturing runs a capturing tether command (capture, dns) in the
// background and returns once it captures; stdout holds what it printed
// once wait returned.
func (e *env) startCapturing(verb string, args ...string) (wait func() (int, string), stdout *strings.Builder) {
	e.t.Helper()
	return e.startCapturingWith(verb, nil, args...)
}

func (e *env) startCapturingWith(verb string, started func(*exec.Cmd), args ...string) (wait func() (int, string), stdout *strings.Builder) {
	e.t.Helper()
	args = agentImage(append([]string{verb}, append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)...)
	cmd := exec.Command(tetherBinary(e.t), args...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	stdout = &strings.Builder{}
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	if started != nil {
		started(cmd)
	}
	var log strings.Builder
	ready := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "capturing on") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			<-done
			e.t.Fatalf("capture ended before capturing:\n%s", log.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		e.t.Fatal("capture did not start within 2 minutes")
	}
	time.Sleep(500 * time.Millisecond) // the agent's socket opens right after it reports
	return func() (int, string) {
		err := cmd.Wait()
		<-done
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, log.String()
	}, stdout
}

func tsharkURIs(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("tshark", "-r", file, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark cannot read %s: %v\n%s", file, err, out)
	}
	return string(out)
}

// TestCapturePcapReadByTshark: packets of the orders pod, filtered for its
// port, reach a pcap file that tshark reads, with the test's requests in
// it; a filter for another port captures none of them. The pod is not
// restarted.
func TestCapturePcapReadByTshark(t *testing.T) {
	e := newEnvLevel(t, "baseline") // capture needs CAP_NET_RAW, which restricted forbids
	e.deployOrders(1)
	pod := e.firstPod("orders")
	client := e.clientPod("client")
	dir := t.TempDir()
	send := func(tag string) {
		for i := range 3 {
			if out, ok := e.exec(client, "/tether-demo", "get", fmt.Sprintf("http://orders.%s.svc.cluster.local/orders/7?probe=%s-%d", e.ns, tag, i)); !ok {
				t.Fatalf("request failed: %s", out)
			}
		}
	}

	file := filepath.Join(dir, "orders.pcap")
	wait := e.startCapture(pod, "--filter", "tcp port 8080", "-w", file, "--duration", "8s")
	send("in")
	if code, log := wait(); code != 0 {
		t.Fatalf("capture exited %d:\n%s", code, log)
	}
	uris := tsharkURIs(t, file)
	for i := range 3 {
		if want := fmt.Sprintf("/orders/7?probe=in-%d", i); !strings.Contains(uris, want) {
			t.Errorf("the pcap lacks request %s; tshark saw:\n%s", want, uris)
		}
	}

	other := filepath.Join(dir, "other.pcap")
	wait = e.startCapture(pod, "--filter", "tcp port 9999", "-w", other, "--duration", "6s")
	send("out")
	code, log := wait()
	if code != 0 {
		t.Fatalf("capture exited %d:\n%s", code, log)
	}
	if _, err := os.Stat(other); err == nil {
		if uris := tsharkURIs(t, other); strings.Contains(uris, "probe=out") {
			t.Errorf("a capture for port 9999 holds the port 8080 requests:\n%s", uris)
		}
	}
	if !strings.Contains(log, "0 packets captured") {
		t.Errorf("capture for another port reported:\n%s", log)
	}

	// Ctrl-C ends an open-ended capture cleanly: the file is complete.
	stopped := filepath.Join(dir, "interrupted.pcap")
	wait, cmd := e.startCaptureCmd(pod, "--filter", "tcp port 8080", "-w", stopped)
	send("int")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code, log := wait(); code != 0 || !strings.Contains(log, "capture stopped") {
		t.Errorf("interrupted capture: exit %d:\n%s", code, log)
	}
	if uris := tsharkURIs(t, stopped); !strings.Contains(uris, "probe=int-2") {
		t.Errorf("the interrupted capture's file lacks the requests:\n%s", uris)
	}

	p, err := e.cs.CoreV1().Pods(e.ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the app container restarted %d times", p.Status.ContainerStatuses[0].RestartCount)
	}
}

// TestCaptureBadInput: each gets exit code 2 and a clear message.
func TestCaptureBadInput(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	e.deployOrders(1)
	pod := e.firstPod("orders")
	stuck := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stuck"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "docker.io/tetherkube/no-such-image:1", ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(t.Context(), stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	restricted := newEnv(t)
	restricted.deployOrders(1)
	rpod := restricted.firstPod("orders")
	tests := []struct {
		name string
		e    *env
		args []string
		want string
	}{
		{"unknown pod", e, []string{"no-such-pod"}, `no pod "no-such-pod" in namespace`},
		{"invalid filter", e, []string{pod, "--filter", "tcp prot 80"}, `at "prot"`},
		{"unwritable path", e, []string{pod, "-w", "/nonexistent-dir/x.pcap"}, "folder /nonexistent-dir does not exist"},
		{"no running container", e, []string{"stuck"}, "pod stuck has no running container"},
		{"restricted namespace", restricted, []string{rpod, "--count", "1"}, "PodSecurity level forbids the capture agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"capture"}, append(tt.args, "--kubeconfig", tt.e.kubeconfig, "-n", tt.e.ns)...)
			_, stderr, code := tt.e.tether(args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, tt.want)
			}
		})
	}
	if _, err := os.Stat("/nonexistent-dir"); err == nil {
		t.Error("the unwritable path was created")
	}
}
