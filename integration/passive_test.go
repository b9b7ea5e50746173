//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/recording"
)

// TestRecordPassive: `record --passive` records from a copy of the pod's
// packets while the Service sends callers straight to the app (the app
// sees the client pod's own address, not the agent's): curl's keep-alive
// GETs and POST to the Service's address are listed with their answers,
// the kubelet's probes are not, and status counts the connections. An
// intercept on top points the Service at the agent while it lasts; after
// leave the agent steps aside again at once, and rollback is exact.
// The namespace is "baseline": the agent runs as root for NET_RAW.
func TestRecordPassive(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	clientIP := e.podIP(client)
	before := e.snapshot()

	_, errOut, code := e.tether(agentImage("record", "orders", "--port", "http", "--passive", "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 {
		t.Fatalf("record --passive: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "pointing the Service back at the app") {
		t.Errorf("record --passive's progress does not say the Service goes back to the app:\n%s", errOut)
	}
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), e.firstPod("orders"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "tether-agent" && (c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser != 0) {
			t.Errorf("the passive agent's security context %+v, want root (the runtime's NET_RAW)", c.SecurityContext)
		}
	}
	e.waitServicePort(intstr.FromInt32(8080))
	e.convergeFrom(client, clientIP, 5)

	// curl, from this machine to the Service's address: three GETs on one
	// keep-alive connection, then a POST with a body.
	base := "http://" + svc.Spec.ClusterIP
	var urls []string
	for i := range 3 {
		urls = append(urls, base+"/whoami?passive="+strconv.Itoa(i))
	}
	if out, err := exec.Command("curl", append([]string{"-sS", "--fail", "-m", "20"}, urls...)...).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if out, err := exec.Command("curl", "-sS", "--fail", "-m", "20", "--data-binary", "passive body", base+"/echo?passive=post").CombinedOutput(); err != nil {
		t.Fatalf("curl POST: %v: %s", err, out)
	}
	want := map[string]bool{"/whoami?passive=0": true, "/whoami?passive=1": true, "/whoami?passive=2": true, "/echo?passive=post": true}
	var rows []listedRow
	seen := map[string]listedRow{}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		rows = e.requestsList()
		for _, r := range rows {
			if want[r.Path] {
				seen[r.Path] = r
			}
		}
		if len(seen) == len(want) {
			break
		}
	}
	for path := range want {
		if r, ok := seen[path]; !ok || r.Status != 200 || r.Destination != recording.ToApp {
			t.Errorf("%s: recorded %+v, want a 200 from the app; all rows: %+v", path, r, rows)
		}
	}
	for _, r := range rows {
		if strings.HasPrefix(r.Path, "/healthz") {
			t.Errorf("the kubelet's probe %+v was recorded", r)
		}
	}
	pods := e.agentPods()
	if len(pods) != 1 || !pods[0].Aside || pods[0].Passive == nil || pods[0].Passive.Conns < 2 {
		t.Errorf("status: %+v; want one agent aside, recording from packets, 2 connections or more", pods)
	}
	if out := e.mustTether("status"); !strings.Contains(out, "connections recorded from packets") {
		t.Errorf("status does not say the agent records from packets:\n%s", out)
	}

	// The same record again changes nothing: the Service stays at the app.
	version := e.waitServicePort(intstr.FromInt32(8080)).ResourceVersion
	_, errOut, code = e.tether(agentImage("record", "orders", "--port", "http", "--passive", "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 || !strings.Contains(errOut, "already records from a copy of its pods' packets") {
		t.Errorf("record --passive again: exit %d, want 0 and that it already records so:\n%s", code, errOut)
	}
	if s := e.waitServicePort(intstr.FromInt32(8080)); s.ResourceVersion != version {
		t.Errorf("record --passive again changed the Service (version %s, then %s)", version, s.ResourceVersion)
	}

	// An intercept on top, then aside again once it ends.
	port := strconv.Itoa(laptop(t))
	e.mustTether(agentImage("intercept", "deploy/orders", "--port", "http:"+port)...)
	e.requireAll(client, "laptop", 5)
	e.mustTether("leave", "deploy/orders")
	e.waitServicePort(intstr.FromInt32(8080))
	e.convergeFrom(client, clientIP, 3)

	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestRecordPassiveRestricted: where Pod Security is "restricted",
// record --passive fails with the admission's reason, exit 2, and leaves
// the workload as it was.
func TestRecordPassiveRestricted(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	_, errOut, code := e.tether(agentImage("record", "orders", "--port", "http", "--passive", "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 2 || !strings.Contains(errOut, "PodSecurity") || !strings.Contains(errOut, "tether-agent") {
		t.Errorf("record --passive in a restricted namespace: exit %d, want 2 and the admission's reason:\n%s", code, errOut)
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestMirrorPassive: `intercept --mirror --passive` makes the agents
// record from a copy of the pods' packets and takes the mirror's copies
// from them: the Service goes back to the app (the app keeps seeing its
// callers' own addresses), curl's requests carrying the filter's header
// are copied to the laptop (Python's http.server) and the others are not,
// every caller is answered by the app, and status counts the copies. A
// later `intercept --mirror` on those agents does the same without
// touching the Service; leave and rollback are exact.
func TestMirrorPassive(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	clientIP := e.podIP(client)
	before := e.snapshot()

	// Nothing listening on the local port: refused before any change.
	_, errOut, code := e.tether(agentImage("intercept", "orders", "--port", "http:1", "--mirror", "--passive",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 2 || !strings.Contains(errOut, "nothing listens on localhost:1") {
		t.Errorf("intercept --mirror --passive to a closed local port: exit %d, want 2 and why:\n%s", code, errOut)
	}
	e.requireRestored(before)

	port, copies, laptopProc := pyLaptop(t)
	mirror := agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(port), "--mirror", "--http-header", "x-user=ana",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)
	_, errOut, code = e.tether(append(mirror, "--passive")...)
	if code != 0 || !strings.Contains(errOut, "pointing the Service back at the app") || !strings.Contains(errOut, "the mirror takes its copies from them") {
		t.Fatalf("intercept --mirror --passive: exit %d, want 0 and that it copies from packets, the Service at the app:\n%s", code, errOut)
	}
	version := e.waitServicePort(intstr.FromInt32(8080)).ResourceVersion
	e.convergeFrom(client, clientIP, 5)

	// curl, from this machine to the Service's address, each batch on one
	// keep-alive connection: 20 GETs for ana, 10 for nobody.
	const n = 20
	served := func(header string, count int) []string {
		args := []string{"-sS", "--fail", "-m", "30", "-w", "%header{x-served-by}\n"}
		if header != "" {
			args = append(args, "-H", header)
		}
		for i := range count {
			args = append(args, "-o", "/dev/null", "http://"+svc.Spec.ClusterIP+"/whoami?mirror="+strconv.Itoa(i))
		}
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		return strings.Fields(string(out))
	}
	for _, by := range append(served("x-user: ana", n), served("", 10)...) {
		if !strings.HasPrefix(by, "orders-") {
			t.Errorf("a request was served by %q, want the app", by)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for copies.Load() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var st struct{ Requests, Dropped, Shed uint64 }
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st = mirrorStatus(t, e); st.Requests >= n {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // a copy of a request the filter should not have matched would come now
	if c := copies.Load(); c != n || st.Requests != n || st.Dropped != 0 {
		t.Errorf("the laptop got %d copies, status %d delivered and %d dropped; want %d, %d and 0", c, st.Requests, st.Dropped, n, n)
	}
	// requests compare pairs each copy with the app's exchange the tap
	// recorded (the laptop answers "laptop": all differ, exit 3).
	var cmp struct {
		Pairs           []struct{ Path string }
		Same, Differing int
		Unpaired        []string
	}
	stdout, stderr, code := e.tether("requests", "compare", "orders", "-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if err := json.Unmarshal([]byte(stdout), &cmp); err != nil || code != 3 || cmp.Differing != n || cmp.Same != 0 || len(cmp.Unpaired) != 0 {
		t.Errorf("requests compare: exit %d, %d same, %d differing, unpaired %v (%v); want exit 3 and %d differing\n%s\n%s",
			code, cmp.Same, cmp.Differing, cmp.Unpaired, err, n, stdout, stderr)
	}
	if out := e.mustTether("status"); !strings.Contains(out, "mirrors copy from the packets") {
		t.Errorf("status does not say the mirror copies from packets:\n%s", out)
	}
	// Not in the Service's path: the app still sees the client pod itself,
	// and the Service was never changed.
	e.convergeFrom(client, clientIP, 3)
	if s := e.waitServicePort(intstr.FromInt32(8080)); s.ResourceVersion != version {
		t.Errorf("the mirror changed the Service (version %s, then %s)", version, s.ResourceVersion)
	}

	// Another developer's filtered intercept points the Service at the
	// agents while it lasts (the mirror copies in the path meanwhile); once
	// it leaves, that daemon steps them aside again though the mirror
	// runs on.
	bobPort, bobGot := named(t, "bob")
	bob := e.daemonAs("bob")
	if _, errOut, code := bob(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(bobPort), "--http-header", "x-user=bob")...); code != 0 {
		t.Fatalf("bob's intercept: exit %d:\n%s", code, errOut)
	}
	if by := served("x-user: bob", 3); strings.Join(by, " ") != "bob bob bob" {
		t.Errorf("bob's requests served by %v, want bob's process", by)
	}
	if bobGot.Load() != 3 {
		t.Errorf("bob's process got %d requests, want 3", bobGot.Load())
	}
	if _, errOut, code := bob("leave", "orders"); code != 0 {
		t.Fatalf("bob's leave: exit %d:\n%s", code, errOut)
	}
	version = e.waitServicePort(intstr.FromInt32(8080)).ResourceVersion // bob's daemon changed it twice
	e.convergeFrom(client, clientIP, 3)
	had := copies.Load()
	served("x-user: ana", 5)
	for deadline := time.Now().Add(30 * time.Second); copies.Load() < had+5 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := copies.Load() - had; got != 5 {
		t.Errorf("after bob left, the laptop got %d copies of 5 requests", got)
	}

	// The laptop stopped (SIGSTOP): every caller is still answered by the
	// app, and the copies it cannot take are dropped, counted.
	if err := laptopProc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, by := range served("x-user: ana", 50) {
		if !strings.HasPrefix(by, "orders-") {
			t.Errorf("with the laptop stopped, a request was served by %q, want the app", by)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if st = mirrorStatus(t, e); st.Dropped > 0 {
			break
		}
	}
	laptopProc.Signal(syscall.SIGCONT)
	if st.Dropped == 0 {
		t.Errorf("with the laptop stopped: status %d delivered, %d dropped; want the drops counted", st.Requests, st.Dropped)
	}

	e.mustTether("leave", "deploy/orders")
	_, errOut, code = e.tether(mirror...)
	if code != 0 || !strings.Contains(errOut, "the mirror takes its copies from them") {
		t.Errorf("intercept --mirror again: exit %d, want 0 and that it copies from packets:\n%s", code, errOut)
	}
	if s := e.waitServicePort(intstr.FromInt32(8080)); s.ResourceVersion != version {
		t.Errorf("the second mirror changed the Service (version %s, then %s)", version, s.ResourceVersion)
	}
	e.mustTether("leave", "deploy/orders")
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}
