//go:build integration

package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// interceptTimed runs tether intercept, logging each progress line with
// the time since the command started, and returns how long it took and
// its stderr.
func (e *env) interceptTimed(args ...string) (time.Duration, string) {
	e.t.Helper()
	args = append(agentImage(append([]string{"intercept"}, args...)...), "--kubeconfig", e.kubeconfig, "-n", e.ns)
	cmd := exec.Command(tetherBinary(e.t), args...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		e.t.Logf("%6d ms  %s", time.Since(start).Milliseconds(), sc.Text())
		all.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("tether %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), all.String())
	}
	return took, all.String()
}

// servedFromNode sends n requests to addr from this process, each on a
// new connection, and counts who served them. The test runs on the node:
// its connections to a ClusterIP take the same kube-proxy rules as a pod's
// on this node.
func servedFromNode(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	got := map[string]int{}
	for range n {
		resp, err := client.Get("http://" + addr + "/whoami")
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		by := resp.Header.Get("X-Served-By")
		if strings.HasPrefix(by, "orders-") {
			by = "app"
		}
		got[by]++
	}
	return got
}

// TestInterceptReadyWhenServed: tether intercept returns only once the
// Service sends every new connection to the laptop: requests sent the
// moment it returns, each on a new connection (from the node, and a burst
// from a pod), all reach the laptop, over two replicas; the agents
// confirmed it (no fixed wait). The same after leave and intercept again,
// which changes nothing in the cluster.
func TestInterceptReadyWhenServed(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(2)
	client := e.clientPod("client")
	port, _ := named(t, "laptop")
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	url := "http://orders." + e.ns + ".svc.cluster.local/whoami"

	for _, round := range []string{"first intercept", "re-intercept"} {
		took, progress := e.interceptTimed("deploy/orders", "--port", "http:"+strconv.Itoa(port))
		got := servedFromNode(t, addr, 200)
		if diff := cmp.Diff(map[string]int{"laptop": 200}, got); diff != "" {
			t.Errorf("%s: requests from the node right after intercept returned (-want +got):\n%s", round, diff)
		}
		out, ok := e.exec(client, "/tether-demo", "parallel", url, "50")
		if !ok || !strings.Contains(out, "ok 50 of 50 served-by map[laptop:50]") {
			t.Errorf("%s: 50 requests at once from a pod: %s", round, out)
		}
		switch round {
		case "first intercept":
			if !strings.Contains(progress, "reaches the agents of 2 pods from 1 nodes") {
				t.Errorf("the agents did not confirm readiness; progress:\n%s", progress)
			}
			if strings.Contains(progress, "letting the nodes apply") || strings.Contains(progress, "warning") {
				t.Errorf("a fixed wait or a warning; progress:\n%s", progress)
			}
		case "re-intercept":
			if !strings.Contains(progress, "already runs the agent") {
				t.Errorf("the re-intercept changed the cluster; progress:\n%s", progress)
			}
		}
		t.Logf("%s: tether intercept took %s", round, took)
		e.mustTether("leave", "deploy/orders")
	}
}
