//go:build integration

package integration

// The fault suite (`make chaos`): each TestChaos* test breaks one thing for
// real on the local cluster and checks one promise tether makes about it.
// Each logs its result as counts ("chaos: ..." lines) for the issue's
// closing note.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/integration/demoapp"
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
	if d := settledDiff(before, after); d != "" {
		diffs = append(diffs, d)
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

// until calls get until it returns want, and returns how long after since
// that answer came (the request's own time included) and what the calls
// before it got. limit is a hang guard; pause is the wait between calls.
func until(get func() string, want string, since time.Time, limit, pause time.Duration) (time.Duration, []string, bool) {
	var others []string
	for {
		got := get()
		if got == want {
			return time.Since(since), others, true
		}
		others = append(others, fmt.Sprintf("%v: %.300s", time.Since(since).Round(time.Millisecond), got))
		if time.Since(since) > limit {
			return time.Since(since), others, false
		}
		time.Sleep(pause)
	}
}

// untilServedBy sends requests from client until one is served by want
// (as until).
func (e *env) untilServedBy(client, want string, since time.Time, limit time.Duration) (time.Duration, []string, bool) {
	e.t.Helper()
	return until(func() string { return e.servedBy(client) }, want, since, limit, 50*time.Millisecond)
}

// lostAfter sends n requests with get and counts those not served by
// want, each an error of the round.
func (e *env) lostAfter(get func() string, want string, round, n int) int {
	e.t.Helper()
	lost := 0
	for j := range n {
		if got := get(); got != want {
			lost++
			e.t.Errorf("round %d: request %d after the tunnel was back served by %q", round, j+1, got)
		}
	}
	return lost
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

// untilURLServedBy sends requests to url from the client pod until one is
// served by want (as until).
func (e *env) untilURLServedBy(client, url, want string, since time.Time, limit time.Duration) (time.Duration, []string, bool) {
	e.t.Helper()
	return until(func() string { return e.servedByURL(client, url) }, want, since, limit, 50*time.Millisecond)
}

// waitNewPod waits for a running, ready pod of orders other than old and
// returns it and when it was first seen ready.
func (e *env) waitNewPod(old string) (*corev1.Pod, time.Time) {
	e.t.Helper()
	ctx := context.Background()
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(100 * time.Millisecond) {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil {
			continue
		}
		for i, p := range pods.Items {
			if p.Name == old || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return &pods.Items[i], time.Now()
				}
			}
		}
	}
	e.t.Fatalf("no new ready pod of orders replaced %s within 2 minutes", old)
	return nil, time.Time{}
}

// TestChaosAgentPodDeleted promises: when the intercepted pod is deleted,
// its replacement gets the agent (the sidecar is in the template) and the
// intercept resumes on it within 5 s of its being ready (a client pod's
// requests to the new pod's agent port reach the laptop again, then the
// Service's), or `tether status` says it is lost.
func TestChaosAgentPodDeleted(t *testing.T) {
	rounds := int(envInt(t, "TETHER_CHAOS_POD_DELETES", 5))
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port))
	e.requireAll(client, "laptop", 3)
	ctx := context.Background()
	var withAgent, within5s, covered int
	var slowest time.Duration
	for i := range rounds {
		old := e.firstPod("orders")
		if err := e.cs.CoreV1().Pods(e.ns).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deletedAt := time.Now()
		pod, readyAt := e.waitNewPod(old)
		if slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "tether-agent" }) {
			withAgent++
		} else {
			t.Errorf("round %d: the new pod %s has no tether-agent container", i+1, pod.Name)
		}
		// The new pod's agent port, straight: kube-proxy's own delay in
		// following the new endpoint is not the intercept's.
		url := ""
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if c.Name == "tether-agent" && p.Name == "http" {
					url = fmt.Sprintf("http://%s/whoami", net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(p.ContainerPort))))
				}
			}
		}
		if url == "" {
			t.Fatalf("round %d: pod %s has no agent port named http", i+1, pod.Name)
		}
		took, others, ok := e.untilURLServedBy(client, url, "laptop", readyAt, 60*time.Second)
		if !ok {
			t.Errorf("round %d: requests never reached the laptop again within 60 s of pod %s being ready; they got %q", i+1, pod.Name, others)
		} else if took <= 5*time.Second {
			within5s++
		}
		slowest = max(slowest, took)
		e.converge(client, "laptop", 3) // through the Service, once kube-proxy follows
		e.requireAll(client, "laptop", 10)
		var st struct {
			Daemon struct{ Intercepts []struct{ Pods []string } }
		}
		json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st)
		if len(st.Daemon.Intercepts) == 1 && slices.Equal(st.Daemon.Intercepts[0].Pods, []string{pod.Name}) {
			covered++
		} else {
			t.Errorf("round %d: status shows intercepts %+v, want pod %s", i+1, st.Daemon.Intercepts, pod.Name)
		}
		t.Logf("round %d/%d: pod %s deleted; %s ready %v later; the laptop served again %v after that (before: %q)",
			i+1, rounds, old, pod.Name, readyAt.Sub(deletedAt).Round(time.Millisecond), took.Round(time.Millisecond), others)
	}
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
	t.Logf("chaos: intercepted pod deleted: %d/%d replacements got the agent, %d/%d intercepts resumed within 5 s of the new pod being ready (slowest %v), %d/%d shown on the new pod by status; rollback exact: %v",
		withAgent, rounds, within5s, rounds, slowest.Round(time.Millisecond), covered, rounds, e.restoredDiff(before) == "")
}

// cutAPIConnections resets every TCP connection between process pid and
// the API server (both ends, with the kernel's SOCK_DESTROY: `ss -K`), as
// a NAT or a load balancer in front of the API server dropping them would,
// and returns how many it cut.
func cutAPIConnections(t *testing.T, pid int, apiPort string) int {
	t.Helper()
	out, err := exec.Command("ss", "-tnpH", "state", "established", "dport", "= :"+apiPort).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, fmt.Sprintf("pid=%d,", pid)) {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		local := fields[2]
		lport := local[strings.LastIndex(local, ":")+1:]
		filter := fmt.Sprintf("( sport = :%s and dport = :%s ) or ( sport = :%s and dport = :%s )", lport, apiPort, apiPort, lport)
		if out, err := exec.Command("ss", "-K", "-tnH", filter).CombinedOutput(); err != nil {
			t.Fatalf("ss -K %s: %v\n%s", filter, err, out)
		}
		n++
	}
	return n
}

// TestChaosPortForwardCut promises: when the daemon's connections to the
// API server are cut under an intercept (so its port-forward tunnels die),
// the tunnels are re-established within 5 s and no request that arrives
// after that is lost; meanwhile the agent serves callers from the app.
func TestChaosPortForwardCut(t *testing.T) {
	rounds := int(envInt(t, "TETHER_CHAOS_CUTS", 5))
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	port := laptop(t)
	apiPort := e.rc.Host[strings.LastIndex(e.rc.Host, ":")+1:]
	e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port), "--path", "port-forward")
	e.wantPaths("port-forward")
	e.requireAll(client, "laptop", 3)
	pid := e.daemonPID()
	var within5s, failedBefore, failedAfter, after int
	var slowest time.Duration
	for i := range rounds {
		n := cutAPIConnections(t, pid, apiPort)
		cutAt := time.Now()
		if n == 0 {
			t.Fatalf("round %d: the daemon (pid %d) has no connection to the API server's port %s to cut", i+1, pid, apiPort)
		}
		took, others, ok := e.untilServedBy(client, "laptop", cutAt, 60*time.Second)
		for _, o := range others {
			if !strings.HasSuffix(o, ": app") {
				failedBefore++
			}
		}
		if !ok {
			t.Fatalf("round %d: requests never reached the laptop again within 60 s of the cut; they got %q", i+1, others)
		}
		if took <= 5*time.Second {
			within5s++
		}
		slowest = max(slowest, took)
		failedAfter += e.lostAfter(func() string { return e.servedBy(client) }, "laptop", i+1, 20)
		after += 20
		if p := e.daemonPID(); p != pid {
			t.Fatalf("round %d: the daemon changed (pid %d -> %d)", i+1, pid, p)
		}
		e.wantPaths("port-forward")
		t.Logf("round %d/%d: cut %d connections; the laptop served again %v later (before: %q)", i+1, rounds, n, took.Round(time.Millisecond), others)
	}
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
	t.Logf("chaos: port-forward cut (the daemon's API server connections reset) under an intercept: %d/%d tunnels back within 5 s (slowest %v), %d requests lost after they were back (of %d), %d failed before (while the app served)",
		within5s, rounds, slowest.Round(time.Millisecond), failedAfter, after, failedBefore)
}

// TestChaosGiBThroughIntercept promises: 1 GiB each way through an
// intercept over the port-forward arrives whole (SHA-256 on both ends).
// The laptop side is the demo app's handler in this test process.
func TestChaosGiBThroughIntercept(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: demoapp.NewServer("laptop").Handler()}
	go srv.Serve(l)
	defer srv.Close()
	e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port), "--path", "port-forward")
	base := "http://orders." + e.ns + ".svc.cluster.local"
	const size = 1 << 30
	var lost []string

	start := time.Now()
	out, ok := e.exec(client, "/tether-demo", "upload", base, strconv.Itoa(size))
	m := regexp.MustCompile(`sent (\d+) sha256 (\w+)`).FindStringSubmatch(out)
	var got struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	i := strings.Index(out, "{")
	if !ok || m == nil || i < 0 || json.Unmarshal([]byte(out[i:]), &got) != nil {
		t.Fatalf("upload of 1 GiB failed: %s", out)
	}
	if strconv.FormatInt(got.Bytes, 10) != m[1] || got.SHA256 != m[2] {
		lost = append(lost, "upload")
		t.Errorf("the laptop received %d bytes sha256 %s; the pod sent %s bytes sha256 %s", got.Bytes, got.SHA256, m[1], m[2])
	}
	up := time.Since(start)

	resp, err := http.Get(fmt.Sprintf("http://%s/bytes?n=%d", l.Addr(), size))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("received %d sha256 %s served-by laptop", size, hex.EncodeToString(h.Sum(nil)))
	start = time.Now()
	out, ok = e.exec(client, "/tether-demo", "download", fmt.Sprintf("%s/bytes?n=%d", base, size))
	if !ok || strings.TrimSpace(out) != want {
		lost = append(lost, "download")
		t.Errorf("download of 1 GiB through the intercept:\n got %s\nwant %s", strings.TrimSpace(out), want)
	}
	down := time.Since(start)
	t.Logf("chaos: 1 GiB each way through an intercept (port-forward), SHA-256 on both ends: upload %.0f MiB/s, download %.0f MiB/s; not whole: %d of 2 %v",
		float64(size)/(1<<20)/up.Seconds(), float64(size)/(1<<20)/down.Seconds(), len(lost), lost)
}
