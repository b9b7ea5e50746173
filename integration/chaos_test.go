//go:build integration

package integration

// The fault suite (`make chaos`): each TestChaos* test breaks one thing for
// real on the local cluster and checks one promise tether makes about it.
// Each logs its result as counts ("chaos: ..." lines) for the issue's
// closing note.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// envInt reads an integer from the environment, else def.
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: not an integer", name, v)
	}
	return n
}

// daemonPID is the pid of this test's running daemon, 0 when none runs
// (status never starts one).
func (e *env) daemonPID() int {
	e.t.Helper()
	out, _, code := e.tether("status", "-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	var st struct {
		Connected bool
		Daemon    struct{ PID int }
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || !st.Connected {
		return 0
	}
	return st.Daemon.PID
}

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

// restoredDiff says how the namespace differs from before and from a
// namespace tether never touched: "" when rollback was exact.
func (e *env) restoredDiff(before snapshot) string {
	e.t.Helper()
	var diffs []string
	after := e.snapshot()
	if !equality.Semantic.DeepEqual(before.template, after.template) {
		diffs = append(diffs, "pod template differs")
	}
	if !equality.Semantic.DeepEqual(before.ports, after.ports) {
		diffs = append(diffs, fmt.Sprintf("service ports %v, want %v", after.ports, before.ports))
	}
	ctx := context.Background()
	cms, err := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cms.Items {
		if strings.HasPrefix(c.Name, "tether-") {
			diffs = append(diffs, "configmap "+c.Name+" remains")
		}
	}
	secrets, err := e.cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, "tether-") {
			diffs = append(diffs, "secret "+s.Name+" remains")
		}
	}
	return strings.Join(diffs, "; ")
}

// untilServedBy sends requests from client until one is served by want,
// and returns how long after since that answer came (the request's own
// time included) and what the requests before it got. limit is a hang
// guard.
func (e *env) untilServedBy(client, want string, since time.Time, limit time.Duration) (time.Duration, []string, bool) {
	e.t.Helper()
	var others []string
	for {
		got := e.servedBy(client)
		if got == want {
			return time.Since(since), others, true
		}
		others = append(others, fmt.Sprintf("%v: %.80s", time.Since(since).Round(time.Millisecond), got))
		if time.Since(since) > limit {
			return time.Since(since), others, false
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	e.deployOrders(1)
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
	var within2s, servedAtAll, exact, during, early int
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
		extra := ""
		if p := e.daemonPID(); p != 0 && p != pid {
			syscall.Kill(p, syscall.SIGKILL)
			extra = " (before the command reached the daemon: it started another one, killed too once it returned)"
			early++
		}
		toApp, others, ok := e.untilServedBy(client, "app", killedAt, 30*time.Second)
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

		out, errOut, code := e.tether("rollback", "deploy/orders", "--kubeconfig", e.kubeconfig, "-n", e.ns)
		// "nothing to roll back": the killed command's own cleanup, or a
		// daemon it started after the kill, had restored everything already
		// (checked below like any other).
		if code != 0 && !(code == 2 && strings.Contains(errOut, "nothing to roll back")) {
			t.Errorf("kill %d (%s at %v): rollback after the kill exited %d:\n%s%s", i+1, op, delay, code, out, errOut)
		}
		e.waitAppRoutes(1)
		diff := e.restoredDiff(before)
		if diff == "" {
			exact++
		} else {
			t.Errorf("kill %d (%s at %v): rollback after the kill not exact: %s", i+1, op, delay, diff)
		}
		t.Logf("kill %d/%d: %s killed %v (%.3f of its unharmed time) after its start (%s)%s; app served %v after the kill; rollback %s",
			i+1, kills, op, delay.Round(time.Millisecond), frac, map[bool]string{true: "it had returned", false: "while it ran"}[exitedFirst],
			extra, toApp.Round(time.Millisecond), map[bool]string{true: "exact", false: "NOT exact: " + diff}[diff == ""])
	}
	t.Logf("chaos: daemon kill -9 during intercept/record/rollback (%d/%d/%d; %d/%d while the command ran, %d of them before it reached the daemon; seed %d): %d/%d served by the app within 2 s (slowest %v; %d/%d at all), %d/%d rollbacks exact",
		perOp["intercept"], perOp["record"], perOp["rollback"], during, kills, early, seed, within2s, kills, slowest.Round(time.Millisecond), servedAtAll, kills, exact, kills)
}

// TestChaosJournalRefused promises: when the API server refuses the
// journal's write (here a ResourceQuota that admits no more ConfigMaps in
// the namespace), the intercept is refused with an exit code and a
// message saying why, and nothing changed in the cluster.
func TestChaosJournalRefused(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	ctx := context.Background()
	cms, err := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-more-configmaps"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceConfigMaps: *resource.NewQuantity(int64(len(cms.Items)), resource.DecimalSI),
		}},
	}
	if _, err := e.cs.CoreV1().ResourceQuotas(e.ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The quota admits nothing until its controller has counted the usage.
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		q, err := e.cs.CoreV1().ResourceQuotas(e.ns).Get(ctx, quota.Name, metav1.GetOptions{})
		if err == nil && len(q.Status.Used) > 0 {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("quota %s never counted", quota.Name)
		}
	}
	before := e.snapshot()
	dep, _ := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
	objects := e.namespaceObjects()

	out, errOut, code := e.tether(agentImage("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(laptop(t)),
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	t.Logf("intercept with the journal's write refused: exit %d\n%s", code, errOut)
	ok := true
	if code != 2 || !strings.Contains(errOut, "quota") || !strings.Contains(errOut, "journal") {
		ok = false
		t.Errorf("intercept with the journal's write refused: exit %d, want 2 naming the journal and the quota\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if diff := e.restoredDiff(before); diff != "" {
		ok = false
		t.Errorf("the refused intercept changed the namespace: %s", diff)
	}
	if got := e.namespaceObjects(); !slices.Equal(objects, got) {
		ok = false
		t.Errorf("objects in the namespace changed:\nbefore %v\nafter  %v", objects, got)
	}
	if after, _ := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{}); after.Generation != dep.Generation {
		ok = false
		t.Errorf("deployment generation %d -> %d: the template was changed", dep.Generation, after.Generation)
	}
	e.requireAll(client, "app", 3)
	t.Logf("chaos: journal write refused by a ResourceQuota: exit %d, nothing changed: %v", code, ok)
}

// namespaceObjects lists the names of the namespace's ConfigMaps, Secrets,
// Pods and Services with their resourceVersions.
func (e *env) namespaceObjects() []string {
	e.t.Helper()
	ctx := context.Background()
	var names []string
	cms, err := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range cms.Items {
		names = append(names, "configmap/"+o.Name+"@"+o.ResourceVersion)
	}
	secrets, err := e.cs.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range secrets.Items {
		names = append(names, "secret/"+o.Name+"@"+o.ResourceVersion)
	}
	pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range pods.Items {
		names = append(names, "pod/"+o.Name)
	}
	svcs, err := e.cs.CoreV1().Services(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range svcs.Items {
		names = append(names, "service/"+o.Name+"@"+o.ResourceVersion)
	}
	slices.Sort(names)
	return names
}
