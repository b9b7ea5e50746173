//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	hellopb "google.golang.org/grpc/examples/helloworld/helloworld"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/recording"
)

// The gRPC tests use a client and server tether did not write: grpc-go's
// helloworld example (module google.golang.org/grpc/examples), the server
// in the cluster as cluster.GreeterImage and both on the host, built from
// this module (go.mod lists them as tools).

const (
	greeterPort   = 50051
	sayHelloPath  = "/helloworld.Greeter/SayHello"
	greeterCalls  = 12
	greeterClient = "greeter_client"
	greeterServer = "greeter_server"
)

// greeterBinaries builds grpc-go's greeter_client and greeter_server for
// the host and returns the folder that holds them.
func greeterBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{greeterClient, greeterServer} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "google.golang.org/grpc/examples/helloworld/"+name)
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return dir
}

// greet runs greeter_client once (a new process, so a new connection)
// against addr and returns the greeting it printed.
func greet(t *testing.T, bins, addr, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bins, greeterClient), "-addr", addr, "-name", name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("greeter_client -addr %s -name %s: %v\n%s", addr, name, err, out)
	}
	_, greeting, ok := strings.Cut(strings.TrimSpace(string(out)), "Greeting: ")
	if !ok {
		return "", fmt.Errorf("greeter_client printed no greeting: %s", out)
	}
	return greeting, nil
}

// deployGreeter runs the greeter image as Deployment and Service
// "greeter" (port "grpc", 50051) and returns the Service's ClusterIP
// address, which the host (the k3s node) reaches.
func (e *env) deployGreeter() string {
	e.t.Helper()
	ctx := context.Background()
	one := int32(1)
	labels := map[string]string{"app": "greeter"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SecurityContext: restrictedPodSecurity(),
					Containers: []corev1.Container{{
						Name: "greeter", Image: cluster.GreeterImage, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: greeterPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("grpc")}},
							PeriodSeconds: 2,
						},
						SecurityContext: restrictedContainerSecurity(),
					}},
				},
			},
		},
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create deployment greeter: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "greeter", Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: greeterPort, TargetPort: intstr.FromString("grpc")}},
		},
	}
	created, err := e.cs.CoreV1().Services(e.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create service greeter: %v", err)
	}
	e.waitAvailable("greeter", 1)
	return net.JoinHostPort(created.Spec.ClusterIP, strconv.Itoa(greeterPort))
}

// savedExchanges reads every exchange the workload's agents hold, bodies
// included (`tether requests save WORKLOAD -`).
func (e *env) savedExchanges(workload string) []*recording.Exchange {
	e.t.Helper()
	out := e.mustTether("requests", "save", workload, "-")
	exs, err := recording.ReadJSONL(strings.NewReader(out))
	if err != nil {
		e.t.Fatalf("requests save: %v\n%s", err, out)
	}
	return exs
}

// statsOf is `tether requests stats WORKLOAD -o json` for a workload of one pod.
func (e *env) statsOf(workload string) daemon.PodRecording {
	e.t.Helper()
	out := e.mustTether("requests", "stats", workload, "-o", "json")
	var pods []daemon.PodRecording
	if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods) != 1 {
		e.t.Fatalf("requests stats -o json: %v\n%s", err, out)
	}
	return pods[0]
}

// checkGreeterCall reports what is wrong with a recorded SayHello call to
// name, answered "Hello "+name with grpc-status 0 over HTTP/2.
func checkGreeterCall(ex *recording.Exchange, name string) string {
	var problems []string
	if ex.Request.Method != "POST" || ex.Request.Target != sayHelloPath {
		problems = append(problems, fmt.Sprintf("request %s %s", ex.Request.Method, ex.Request.Target))
	}
	if ex.Proto != "HTTP/2.0" {
		problems = append(problems, "protocol "+ex.Proto)
	}
	if !bytes.Contains(ex.Request.Body, []byte(name)) {
		problems = append(problems, fmt.Sprintf("request body %q does not hold %q", ex.Request.Body, name))
	}
	if ex.Response == nil {
		return strings.Join(append(problems, "no response: "+ex.Error), "; ")
	}
	if ex.Response.Status != 200 || ex.Response.Trailer.Get("Grpc-Status") != "0" {
		problems = append(problems, fmt.Sprintf("status %d, trailers %v", ex.Response.Status, ex.Response.Trailer))
	}
	if !bytes.Contains(ex.Response.Body, []byte("Hello "+name)) {
		problems = append(problems, fmt.Sprintf("response body %q", ex.Response.Body))
	}
	return strings.Join(problems, "; ")
}

// howdyServer is grpc-go's Greeter with another greeting: the "changed"
// server a replay with --diff must report.
type howdyServer struct {
	hellopb.UnimplementedGreeterServer
}

func (howdyServer) SayHello(_ context.Context, in *hellopb.HelloRequest) (*hellopb.HelloReply, error) {
	return &hellopb.HelloReply{Message: "Howdy " + in.GetName()}, nil
}

// startHowdy serves howdyServer on loopback and returns its port.
func startHowdy(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hellopb.RegisterGreeterServer(s, howdyServer{})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().(*net.TCPAddr).Port
}

// TestGRPCRecordReplay records grpc-go's greeter_client calling its
// greeter_server through the Service, each call on a new connection, and
// replays one into the cluster and to a changed server with --diff.
func TestGRPCRecordReplay(t *testing.T) {
	e := newEnv(t)
	bins := greeterBinaries(t)
	addr := e.deployGreeter()
	e.mustTether("record", "greeter", "--port", "grpc")

	for i := range greeterCalls {
		name := fmt.Sprintf("grpc-%d", i)
		got, err := greet(t, bins, addr, name)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got != "Hello "+name {
			t.Errorf("call %d answered %q", i, got)
		}
	}

	rows := e.requestsListOf("greeter")
	if len(rows) != greeterCalls {
		t.Errorf("requests list: %d rows, want %d: %+v", len(rows), greeterCalls, rows)
	}
	for i, r := range rows {
		if r.Method != "POST" || r.Path != sayHelloPath || r.Status != 200 || r.Destination != recording.ToApp || r.Error != "" {
			t.Errorf("row %d: %+v, want POST %s 200 to the app", i, r, sayHelloPath)
		}
	}
	exs := e.savedExchanges("greeter")
	if len(exs) != greeterCalls {
		t.Fatalf("requests save: %d exchanges, want %d", len(exs), greeterCalls)
	}
	for i, ex := range exs {
		if p := checkGreeterCall(ex, fmt.Sprintf("grpc-%d", i)); p != "" {
			t.Errorf("exchange %d: %s", i, p)
		}
	}
	st := e.statsOf("greeter").Stats
	// One connection per call: the kubelet's probes go to the app's port,
	// not the agent's (tether pins probes that named the port).
	if st.NotHTTP != 0 || st.Malformed != 0 || st.Upgraded != 0 || st.Exchanges != greeterCalls || st.Connections != greeterCalls {
		t.Errorf("recorder stats %+v: want %d connections and exchanges, none not HTTP, malformed or upgraded", st, greeterCalls)
	}
	if t.Failed() {
		t.FailNow()
	}
	first := rows[0].ID

	t.Run("replay into the cluster", func(t *testing.T) {
		out, errOut, code := e.tether("replay", "greeter", first, "--to", "cluster", "--diff", "-n", e.ns)
		if code != 0 || !strings.Contains(out, "grpc-status 0") || !strings.Contains(out, "same as recorded") || !strings.Contains(out, "0 of 1 answers differ") {
			t.Fatalf("replay --to cluster --diff: exit %d, want 0 and the same answer:\n%s%s", code, out, errOut)
		}
		t.Logf("replay --to cluster --diff:\n%s", out)
		// The replay took the recorded path, so the agent recorded it:
		// a second SayHello, over HTTP/2, answered alike.
		exs := e.savedExchanges("greeter")
		if len(exs) != greeterCalls+1 {
			t.Fatalf("after the replay the agent holds %d exchanges, want %d", len(exs), greeterCalls+1)
		}
		if p := checkGreeterCall(exs[len(exs)-1], "grpc-0"); p != "" {
			t.Errorf("the replayed call as the agent recorded it: %s", p)
		}
	})

	t.Run("replay to a changed server", func(t *testing.T) {
		port := startHowdy(t)
		out, errOut, code := e.tether("replay", "greeter", first, "--to", "local:"+strconv.Itoa(port), "--diff", "-n", e.ns)
		want := `body message[0] 1: "Hello grpc-0" -> "Howdy grpc-0"`
		if code != 3 || !strings.Contains(out, want) || strings.Count(out, "\n    ") != 1 {
			t.Errorf("replay --diff to a server that answers Howdy: exit %d, want 3 and exactly %q:\n%s%s", code, want, out, errOut)
		}
		t.Logf("replay --diff to the Howdy server (exit %d):\n%s", code, out)
	})
}

// requestsListOf is `tether requests list WORKLOAD -o json`.
func (e *env) requestsListOf(workload string, args ...string) []listedRow {
	e.t.Helper()
	out := e.mustTether(append([]string{"requests", "list", workload, "-o", "json"}, args...)...)
	var rows []listedRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		e.t.Fatalf("requests list -o json: %v\n%s", err, out)
	}
	return rows
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// has reports whether s is in b within 2 s: a child's output reaches b
// through a pipe, and may arrive after the answer the child sent
// (greeter_server logs a call before it answers, CI read the log first).
func (b *syncBuffer) has(s string) bool {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(b.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// startLaptopGreeter runs greeter_server on the host, as a developer
// would, and returns its port and its log.
func startLaptopGreeter(t *testing.T, bins string) (int, *syncBuffer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var log syncBuffer
	cmd := exec.Command(filepath.Join(bins, greeterServer), "-port", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "server listening"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("greeter_server on port %d did not start: %s", port, log.String())
		}
	}
	return port, &log
}

// TestGRPCIntercept intercepts the greeter Service to grpc-go's
// greeter_server on the host: calls to the Service reach it, and after
// leave the cluster's server answers again.
func TestGRPCIntercept(t *testing.T) {
	e := newEnv(t)
	bins := greeterBinaries(t)
	addr := e.deployGreeter()
	port, laptopLog := startLaptopGreeter(t, bins)

	out := e.mustTether("intercept", "greeter", "--port", "grpc:"+strconv.Itoa(port))
	if !strings.Contains(out, "localhost:"+strconv.Itoa(port)) {
		t.Errorf("intercept does not name the local port %d:\n%s", port, out)
	}
	for i := range greeterCalls {
		name := fmt.Sprintf("laptop-%d", i)
		got, err := greet(t, bins, addr, name)
		if err != nil {
			t.Fatalf("call %d: %v\nlaptop server log:\n%s", i, err, laptopLog)
		}
		if got != "Hello "+name || !laptopLog.has("Received: "+name+"\n") {
			t.Errorf("call %d answered %q; the laptop's greeter_server did not receive it:\n%s", i, got, laptopLog)
		}
	}
	rows := e.requestsListOf("greeter")
	for i, r := range rows {
		if r.Path != sayHelloPath || r.Status != 200 || r.Destination != recording.ToLaptop {
			t.Errorf("row %d: %+v, want %s 200 to the laptop", i, r, sayHelloPath)
		}
	}
	if len(rows) != greeterCalls {
		t.Errorf("recorded %d intercepted calls, want %d", len(rows), greeterCalls)
	}

	t.Logf("%s\nlaptop greeter_server log:\n%s", out, laptopLog)
	e.mustTether("leave", "greeter")
	if got, err := greet(t, bins, addr, "after-leave"); err != nil || got != "Hello after-leave" {
		t.Fatalf("after leave: %q, %v", got, err)
	}
	if strings.Contains(laptopLog.String(), "after-leave") {
		t.Errorf("after leave the laptop still received a call:\n%s", laptopLog)
	}
}

// TestGRPCMirrorPassive: `intercept --mirror --passive` of the greeter
// Service copies each call of grpc-go's greeter_client, read from the
// pod's packets, to grpc-go's greeter_server on the host (over h2c, with
// gRPC's headers) while the cluster's server answers every call; status
// counts the copies delivered.
func TestGRPCMirrorPassive(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	bins := greeterBinaries(t)
	addr := e.deployGreeter()
	port, laptopLog := startLaptopGreeter(t, bins)

	_, errOut, code := e.tether(agentImage("intercept", "greeter", "--port", "grpc:"+strconv.Itoa(port), "--mirror", "--passive",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)...)
	if code != 0 || !strings.Contains(errOut, "the mirror takes its copies from them") {
		t.Fatalf("intercept --mirror --passive: exit %d, want 0 and that it copies from packets:\n%s", code, errOut)
	}
	const calls = 5
	for i := range calls {
		name := fmt.Sprintf("copied-%d", i)
		if got, err := greet(t, bins, addr, name); err != nil || got != "Hello "+name {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
	var st struct{ Requests, Dropped, Shed uint64 }
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st = mirrorStatus(t, e); st.Requests >= calls {
			break
		}
	}
	for i := range calls {
		if name := fmt.Sprintf("copied-%d", i); !laptopLog.has("Received: " + name + "\n") {
			t.Errorf("the laptop's greeter_server got no copy of call %s:\n%s", name, laptopLog)
		}
	}
	if st.Requests != calls || st.Dropped != 0 {
		t.Errorf("status: %d copies delivered, %d dropped; want %d and 0", st.Requests, st.Dropped, calls)
	}
	e.mustTether("leave", "greeter")
	e.mustTether("rollback", "greeter")
}
