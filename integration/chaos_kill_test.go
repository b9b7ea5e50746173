//go:build integration

package integration

// The fault suite's daemon kills (see chaos_test.go for the suite).

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startTether starts tether with args (and this test's kubeconfig and
// namespace) without waiting for it.
func (e *env) startTether(args ...string) *exec.Cmd {
	e.t.Helper()
	if args[0] == "intercept" || args[0] == "record" {
		args = agentImage(args...)
	}
	cmd := exec.Command(tetherBinary(e.t), append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return cmd
}

// heldRollout reports whether a pinned rollout holds deploy/orders: the
// Service's selector requires one ReplicaSet's pod-template-hash, or the
// Deployment keeps its old pods with tether's minReadySeconds.
func (e *env) heldRollout() bool {
	e.t.Helper()
	ctx := context.Background()
	svc, err := e.cs.CoreV1().Services(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	_, pinned := svc.Spec.Selector["pod-template-hash"]
	return pinned || d.Spec.MinReadySeconds >= 1<<30
}

// nodeServedBy sends one request to the orders Service's ClusterIP from
// this machine (a node of the cluster: the same kube-proxy rules as a
// pod's), a new connection with a 1 s timeout as a caller that retries
// would, and returns who answered: "laptop", "app" or what went wrong.
func (e *env) nodeServedBy(svc *corev1.Service) string {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))) + "/whoami")
	if err != nil {
		return "failed: " + err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if v := resp.Header.Get("X-Served-By"); strings.HasPrefix(v, "orders-") {
		return "app"
	} else if v != "" {
		return v
	}
	return "unknown: " + resp.Status
}

// untilNodeServedBy is untilServedBy with nodeServedBy's requests.
func (e *env) untilNodeServedBy(svc *corev1.Service, want string, since time.Time, limit time.Duration) (time.Duration, []string, bool) {
	return until(func() string { return e.nodeServedBy(svc) }, want, since, limit, 20*time.Millisecond)
}

// TestChaosDaemonKill promises: the daemon killed with -9 at any moment of
// `intercept`, `record` or `rollback` never takes the service down (the app
// serves a client pod's requests within 2 s), and a later `tether
// rollback` leaves every object as it was before tether touched it.
// TETHER_CHAOS_KILLS (default 50) sets how many kills; TETHER_CHAOS_SEED
// replays a run's moments (the same fractions of each command's unharmed
// time, measured at the start).
func TestChaosDaemonKill(t *testing.T) {
	kills := int(envInt(t, "TETHER_CHAOS_KILLS", 50))
	seed := envInt(t, "TETHER_CHAOS_SEED", time.Now().UnixNano())
	t.Logf("seed %d (replay with TETHER_CHAOS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	e := newEnv(t)
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	ops := map[string][]string{
		"intercept": {"intercept", "deploy/orders", "--port", "http:" + strconv.Itoa(port)},
		"record":    {"record", "deploy/orders", "--port", "http"},
		"rollback":  {"rollback", "deploy/orders"},
	}
	// How long each command takes unharmed: the kills fall in [0, that).
	took := map[string]time.Duration{}
	timed := func(args ...string) time.Duration {
		start := time.Now()
		e.mustTether(args...)
		return time.Since(start)
	}
	took["intercept"] = timed(ops["intercept"]...)
	took["rollback"] = timed(ops["rollback"]...)
	e.waitAppRoutes(1)
	took["record"] = timed(ops["record"]...)
	e.mustTether(ops["rollback"]...)
	e.waitAppRoutes(1)
	t.Logf("unharmed: intercept %v, record %v, rollback %v", took["intercept"].Round(time.Millisecond), took["record"].Round(time.Millisecond), took["rollback"].Round(time.Millisecond))

	names := []string{"intercept", "record", "rollback"}
	var within2s, servedAtAll, exact, during, early, held int
	var slowest time.Duration
	perOp := map[string]int{}
	for i := range kills {
		op := names[i%len(names)]
		perOp[op]++
		frac := rng.Float64()
		delay := time.Duration(frac * float64(took[op]))
		if op == "rollback" {
			e.mustTether(ops["intercept"]...)
		}
		e.mustTether("connect")
		pid := e.daemonPID()
		if pid == 0 {
			t.Fatalf("kill %d: no daemon after connect", i+1)
		}
		cmd := e.startTether(ops[op]...)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		time.Sleep(delay)
		var exitedFirst bool
		select {
		case err := <-done:
			exitedFirst = true
			done <- err
		default:
		}
		killedAt := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: kill -9 %d: %v", i+1, pid, err)
		}
		if !exitedFirst {
			during++
		}
		<-done
		// A kill before the command reached the daemon makes the command
		// start another one: that one dies too, so every kill leaves no
		// daemon behind.
		// The app's 2 s count from that second kill: until it, that daemon
		// was doing the command's work (traffic to the laptop, rightly).
		extra := ""
		if p := e.daemonPID(); p != 0 && p != pid {
			killedAt = time.Now()
			syscall.Kill(p, syscall.SIGKILL)
			extra = " (before the command reached the daemon: it started another one, killed too once it returned; times from that kill)"
			early++
		}
		// The caller: requests from this node (1 s timeout each, so one
		// connection to an endpoint a rollout just removed does not hide
		// the next), then the client pod's.
		toApp, others, ok := e.untilNodeServedBy(svc, "app", killedAt, 30*time.Second)
		if len(others) > 0 {
			t.Logf("kill %d: before the app served: %q", i+1, others)
		}
		if ok {
			servedAtAll++
			if toApp <= 2*time.Second {
				within2s++
			}
			slowest = max(slowest, toApp)
		} else {
			t.Errorf("kill %d (%s at %v): no request served by the app within 30 s of the kill", i+1, op, delay)
		}
		// Once the rollout the killed daemon may have begun ends (the
		// demo app has no preStop pause, so a rollout's old pod refuses a
		// connection or two while it stops, tether or not) and kube-proxy
		// has caught up with it (a connection to the removed pod's address
		// hangs until then), the client pod's requests are the app's.
		// A kill during a pinned rollout (daemon/internal/intercept/pin.go)
		// leaves it held, the old pods kept and serving, until the
		// rollback: that rollout does not end by itself.
		if e.heldRollout() {
			held++
		} else {
			e.waitSettled(1, nil)
		}
		e.converge(client, "app", 3)

		out, errOut, code := e.tether("rollback", "deploy/orders", "--kubeconfig", e.kubeconfig, "-n", e.ns)
		// "nothing to roll back": the killed command's own cleanup, or a
		// daemon it started after the kill, had restored everything already
		// (checked below like any other).
		refused := code != 0 && !(code == 2 && strings.Contains(errOut, "nothing to roll back"))
		if refused {
			t.Errorf("kill %d (%s at %v): rollback after the kill exited %d:\n%s%s", i+1, op, delay, code, out, errOut)
			// Counted as not exact; --force gives the next kill a clean start.
			e.mustTether("rollback", "deploy/orders", "--force")
		}
		e.waitAppRoutes(1)
		diff := e.restoredDiff(before)
		if refused {
			diff = "rollback refused (restored by --force); " + diff
		}
		if diff == "" {
			exact++
		} else {
			t.Errorf("kill %d (%s at %v): rollback after the kill not exact: %s", i+1, op, delay, diff)
		}
		t.Logf("kill %d/%d: %s killed %v (%.3f of its unharmed time) after its start (%s)%s; app served %v after the kill; rollback %s",
			i+1, kills, op, delay.Round(time.Millisecond), frac, map[bool]string{true: "it had returned", false: "while it ran"}[exitedFirst],
			extra, toApp.Round(time.Millisecond), map[bool]string{true: "exact", false: "NOT exact: " + diff}[diff == ""])
	}
	t.Logf("chaos: daemon kill -9 during intercept/record/rollback (%d/%d/%d; %d/%d while the command ran, %d of them before it reached the daemon, %d during a pinned rollout; seed %d): %d/%d served by the app within 2 s (slowest %v; %d/%d at all), %d/%d rollbacks exact",
		perOp["intercept"], perOp["record"], perOp["rollback"], during, kills, early, held, seed, within2s, kills, slowest.Round(time.Millisecond), servedAtAll, kills, exact, kills)
}
