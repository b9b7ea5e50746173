//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	hellopb "google.golang.org/grpc/examples/helloworld/helloworld"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// named serves HTTP on loopback as a developer's process, answering with
// X-Served-By: name, and counts the requests it got.
func named(t *testing.T, name string) (int, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("X-Served-By", name)
		fmt.Fprintf(w, `{"served_by":%q,"path":%q}`+"\n", name, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, &n
}

// daemonAs runs tether with its own runtime folder: another daemon, as a
// second developer's laptop would run, stopped when the test ends.
func (e *env) daemonAs(name string) func(args ...string) (string, string, int) {
	e.t.Helper()
	dir, err := os.MkdirTemp("", "tt-"+name)
	if err != nil {
		e.t.Fatal(err)
	}
	env := []string{"XDG_RUNTIME_DIR=" + dir, "KUBECONFIG=" + e.kubeconfig}
	e.t.Cleanup(func() {
		runBinary(e.t, tetherBinary(e.t), env, "quit", "--kubeconfig", e.kubeconfig)
		os.RemoveAll(dir)
	})
	return func(args ...string) (string, string, int) {
		e.t.Helper()
		return runBinary(e.t, tetherBinary(e.t), env, append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	}
}

// pythonServedBy sends requests to url from Python's http.client over ONE
// keep-alive connection, each with the x-tether-user header given ("" for
// none), and returns who served each.
func pythonServedBy(t *testing.T, url string, users ...string) []string {
	t.Helper()
	script := `
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=20)
for user in sys.argv[2:]:
    h = {"x-tether-user": user} if user != "-" else {}
    c.request("GET", u.path, headers=h)
    r = c.getresponse()
    r.read()
    print(r.getheader("X-Served-By", "?"))
c.close()
`
	args := []string{"-c", script, url}
	for _, u := range users {
		if u == "" {
			u = "-"
		}
		args = append(args, u)
	}
	out, err := exec.Command("python3", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 http.client: %v\n%s", err, out)
	}
	var got []string
	for _, line := range strings.Fields(string(out)) {
		if strings.HasPrefix(line, "orders-") {
			line = "app"
		}
		got = append(got, line)
	}
	return got
}

// TestPersonalIntercepts: two developers (two daemons) intercept one
// workload and port with their own header; Python's http.client on one
// keep-alive connection and curl get each request served where its header
// says, the rest by the app; a third whose filter overlaps is refused,
// naming the first, with nothing changed; one leaving keeps the other's;
// a mirror gets a copy of every request while the app answers them all;
// rollback restores the workload exactly.
func TestPersonalIntercepts(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(2)
	before := e.snapshot()
	url := "http://" + svc.Spec.ClusterIP + "/whoami"
	anaPort, _ := named(t, "ana")
	bobPort, _ := named(t, "bob")
	ana, bob, carol := e.daemonAs("ana"), e.daemonAs("bob"), e.daemonAs("carol")
	must := func(run func(...string) (string, string, int), args ...string) string {
		t.Helper()
		out, errOut, code := run(args...)
		if code != 0 {
			t.Fatalf("tether %s exited %d:\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	out := must(ana, agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(anaPort), "--http-header", "x-tether-user=ana")...)
	if !strings.Contains(out, "requests with X-Tether-User=ana") {
		t.Errorf("intercept output does not say the filter: %s", out)
	}
	must(bob, agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(bobPort), "--http-header=x-tether-user=bob")...)
	template := e.snapshot().template

	got := pythonServedBy(t, url, "ana", "bob", "", "ana", "carol", "bob", "ana")
	if want := []string{"ana", "bob", "app", "ana", "app", "bob", "ana"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("one keep-alive connection: served by %v, want %v", got, want)
	}
	for user, want := range map[string]string{"ana": "ana", "bob": "bob", "": "app"} {
		args := []string{"-sS", "-m", "20", "-o", "/dev/null", "-D", "-", url}
		if user != "" {
			args = append(args, "-H", "X-Tether-User: "+user)
		}
		b, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, b)
		}
		if by := servedByHeader(string(b)); by != want {
			t.Errorf("curl as %q: served by %q, want %s", user, by, want)
		}
	}

	// An overlapping filter is refused, naming who has it; nothing changes.
	_, errOut, code := carol(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(bobPort), "--http-header", "x-tether-user=~.*")...)
	if code == 0 || !strings.Contains(errOut, "is intercepted by") || !strings.Contains(errOut, "X-Tether-User=ana") {
		t.Errorf("overlapping intercept: exit %d, stderr %s; want a refusal naming ana's intercept", code, errOut)
	}
	if after := e.snapshot().template; !equality.Semantic.DeepEqual(template, after) {
		t.Error("the refused intercept changed the pod template")
	}

	// status lists everyone's intercepts of the port.
	var st struct {
		Daemon struct {
			Intercepts []struct {
				Owner          string
				PortIntercepts []struct {
					Owner    string
					Requests uint64
					Filter   struct{ Headers []string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(must(ana, "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Daemon.Intercepts) != 1 || len(st.Daemon.Intercepts[0].PortIntercepts) != 2 {
		t.Errorf("status does not list both intercepts of the port: %+v", st)
	}

	must(ana, "leave", "orders")
	got = pythonServedBy(t, url, "ana", "bob", "")
	if want := []string{"app", "bob", "app"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after ana left: served by %v, want %v", got, want)
	}

	// A mirror: the app answers every request; carol's process gets a copy
	// of each.
	mirrorPort, copies := named(t, "carol")
	must(carol, agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(mirrorPort), "--mirror", "--http-path", "/whoami")...)
	const n = 50
	users := make([]string, n)
	got = pythonServedBy(t, url, users...)
	for i, by := range got {
		if by != "app" {
			t.Fatalf("request %d with a mirror: served by %s, want the app", i, by)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for copies.Load() < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c := copies.Load(); c != n {
		t.Errorf("the mirror got %d copies of %d requests", c, n)
	}

	// The agent recorded each route: to the laptops, to the app, and the
	// mirror's copies with their answers.
	dests := map[string]int{}
	for _, r := range e.requestsList() {
		if r.Path == "/whoami" && r.Status == 200 {
			dests[r.Destination]++
		}
	}
	if dests["laptop"] == 0 || dests["app"] == 0 || dests["mirror"] < n {
		t.Errorf("recorded /whoami exchanges by destination: %v; want laptop and app ones, and %d mirror copies", dests, n)
	}

	// Both leave: everything goes to the app (the mirror's copies go on).
	must(bob, "leave", "orders")
	got = pythonServedBy(t, url, "ana", "bob", "")
	if want := []string{"app", "app", "app"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after both left: served by %v, want %v", got, want)
	}

	must(bob, "rollback", "orders")
	e.waitAppRoutes(2)
	e.requireRestored(before)
	ctx := context.Background()
	if d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{}); err != nil || d.Status.Replicas != 2 {
		t.Errorf("orders after rollback: %v %v", d, err)
	}
}

// servedByHeader reads X-Served-By from a dump of response headers.
func servedByHeader(dump string) string {
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "X-Served-By: "); ok {
			if strings.HasPrefix(v, "orders-") {
				return "app"
			}
			return v
		}
	}
	return "?"
}

// TestPersonalInterceptsGRPC: grpc-go's client over HTTP/2 cleartext, one
// connection, calls routed by their metadata: ana's to her process, bob's
// (a header and a path filter) to his, the rest to grpc-go's example
// server in the cluster; calls for both multiplexed at once on the one
// connection each reach the right place.
func TestPersonalInterceptsGRPC(t *testing.T) {
	e := newEnv(t)
	addr := e.deployGreeter()
	ana, bob := e.daemonAs("ana"), e.daemonAs("bob")
	anaPort := startGreeting(t, "Howdy")
	bobPort := startGreeting(t, "Ahoy")
	for _, c := range []struct {
		run  func(...string) (string, string, int)
		args []string
	}{
		{ana, []string{"intercept", "greeter", "--port", "grpc:" + strconv.Itoa(anaPort), "--http-header", "x-tether-user=ana"}},
		{bob, []string{"intercept", "greeter", "--port", "grpc:" + strconv.Itoa(bobPort), "--http-header", "x-tether-user=bob", "--http-path", "/helloworld.Greeter/"}},
	} {
		if out, errOut, code := c.run(agentImage(c.args...)...); code != 0 {
			t.Fatalf("tether %v: exit %d\n%s%s", c.args, code, out, errOut)
		}
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := hellopb.NewGreeterClient(cc)
	call := func(user string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if user != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-tether-user", user)
		}
		r, err := client.SayHello(ctx, &hellopb.HelloRequest{Name: "t"})
		return r.GetMessage(), err
	}
	want := map[string]string{"ana": "Howdy t", "bob": "Ahoy t", "": "Hello t", "carol": "Hello t"}
	for _, user := range []string{"ana", "bob", "", "ana", "carol", "bob"} {
		got, err := call(user)
		if err != nil || got != want[user] {
			t.Errorf("call as %q: %q, %v; want %q", user, got, err, want[user])
		}
	}
	// Streams for both at once on the one connection.
	var wg sync.WaitGroup
	errs := make(chan string, 60)
	for i := range 60 {
		user := []string{"ana", "bob", ""}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := call(user); err != nil || got != want[user] {
				errs <- fmt.Sprintf("concurrent call as %q: %q, %v", user, got, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// startGreeting serves grpc-go's Greeter on loopback answering
// "GREETING NAME", and returns its port.
func startGreeting(t *testing.T, greeting string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hellopb.RegisterGreeterServer(s, greetingServer{greeting: greeting})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().(*net.TCPAddr).Port
}

type greetingServer struct {
	hellopb.UnimplementedGreeterServer
	greeting string
}

func (g greetingServer) SayHello(_ context.Context, in *hellopb.HelloRequest) (*hellopb.HelloReply, error) {
	return &hellopb.HelloReply{Message: g.greeting + " " + in.GetName()}, nil
}

// TestFilterBadInput: a malformed header filter, an invalid regular
// expression, and a filter or mirror on a port declared not HTTP (a
// mirror from packets too) exit 2 with what to fix, and change nothing.
func TestFilterBadInput(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	ctx := context.Background()
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "tcp-raw", Port: 9000, TargetPort: svc.Spec.Ports[0].TargetPort})
	if _, err := e.cs.CoreV1().Services(e.ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	local, _ := named(t, "laptop")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", "http:3000", "--http-header=x user=ana"}, `"x user" is not a valid header name`},
		{[]string{"--port", "http:3000", "--http-path-regex", "/orders/("}, "missing closing )"},
		{[]string{"--port", "tcp-raw:3000", "--mirror"}, "port 9000 (tcp-raw) is named tcp-raw: tether filters and mirrors only cleartext HTTP"},
		{[]string{"--port", "tcp-raw:3000", "--http-header", "x-user=ana"}, "tether filters and mirrors only cleartext HTTP"},
		// Refused before the recording from packets rolls out.
		{[]string{"--port", "tcp-raw:3000", "--mirror", "--passive"}, "tether filters and mirrors only cleartext HTTP"},
	} {
		tt.args[1] = strings.Replace(tt.args[1], "3000", strconv.Itoa(local), 1)
		args := agentImage(append([]string{"intercept", "orders"}, tt.args...)...)
		args = append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)
		_, errOut, code := e.tether(args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("tether %v: exit %d, stderr %s; want exit 2 saying %q", tt.args, code, errOut, tt.want)
		}
	}
	after := e.snapshot()
	if !equality.Semantic.DeepEqual(before.template, after.template) || !equality.Semantic.DeepEqual(before.ports, after.ports) {
		t.Errorf("bad input changed the workload or Service:\nbefore %+v\nafter  %+v", before, after)
	}
	if cms, _ := e.cs.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "tether.dev/journal=true"}); len(cms.Items) != 0 {
		t.Errorf("bad input left %d journals", len(cms.Items))
	}
}
