package intercept

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/agent"
	agentserver "github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/tunnel"
)

// nameServer answers every connection with name, then closes it; with
// hold, it keeps the connection open until the caller closes it.
func nameServer(t *testing.T, name string, hold ...bool) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			if len(hold) > 0 && hold[0] {
				go func() { io.Copy(io.Discard, c); c.Close() }()
				continue
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// loopbackAgent runs a real agent in front of appPort; it returns its
// tunnel address and the port it listens on for the app's callers.
func loopbackAgent(t *testing.T, token []byte, appPort int) (tunnelAddr string, listenPort int) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listenPort = fl.Addr().(*net.TCPAddr).Port
	cfg := agentserver.DefaultConfig()
	cfg.Token = token
	cfg.Record.Off = true
	cfg.Forwards = []agent.Forward{{ListenPort: listenPort, AppPort: appPort}}
	a, err := agentserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.ServeListeners(ctx, tl, []net.Listener{fl}) }()
	t.Cleanup(func() { cancel(); <-done })
	return tl.Addr().String(), listenPort
}

// countingDialer reaches the loopback agent for any pod, and counts.
type countingDialer struct {
	addr  string
	dials atomic.Int32
}

func (d *countingDialer) DialPod(ctx context.Context, _, _ string, _ int) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

// answer connects to port as a cluster caller would and returns what
// answered.
func answer(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b) // each server writes its name at once
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func agentPodObject(uid types.UID) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-0", UID: uid, Labels: map[string]string{"app": "orders"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "orders", Ready: true}, {Name: inject.AgentContainer, Ready: true}}},
	}
}

// TestKeptTunnels: an intercept that ends keeps its tunnel, which holds no
// intercept (the agent forwards to the app); the next intercept of the
// same pod takes it without dialing; a pod replaced under the same name
// gets a new tunnel and the kept one closes; Close closes what is kept.
func TestKeptTunnels(t *testing.T) {
	token := []byte("0123456789abcdef-kept-tunnels-test")
	appPort, laptopPort := nameServer(t, "app"), nameServer(t, "laptop", true)
	tunnelAddr, listenPort := loopbackAgent(t, token, appPort)
	d := &countingDialer{addr: tunnelAddr}
	cs := fake.NewClientset(agentPodObject("uid-1"))
	keep := &KeptLinks{}
	key := KeepKey(ns, "deployment/orders")
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	intercept := func(id string) *tunnels {
		t.Helper()
		tu := newTunnels(cs, d, log, ns, "app=orders", token, agent.InterceptSpec{ListenPort: listenPort, ID: id, Owner: "me"}, laptopPort)
		tu.path, tu.keep, tu.keepKey = agent.PathPortForward, keep, key
		if err := tu.start(ctx); err != nil {
			t.Fatal(err)
		}
		return tu
	}

	first := intercept("first")
	// A caller's connection open when the intercept ends (kept alive).
	held, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(listenPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	buf := make([]byte, len("laptop"))
	held.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "laptop" {
		t.Fatalf("intercepted: %q answered (%v), want laptop", buf, err)
	}
	if err := first.leave(ctx); err != nil {
		t.Fatal(err)
	}
	// It ends with the intercept, though the tunnel stays.
	if _, err := held.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection intercepted before leave: read after leave = %v, want it ended", err)
	}
	if diff := cmp.Diff([]string{"orders-0"}, keep.Pods(key)); diff != "" {
		t.Fatalf("kept after leave (-want +got):\n%s", diff)
	}
	kept := keep.Link(key, "orders-0")
	if got := answer(t, listenPort); got != "app" {
		t.Fatalf("after leave, with the tunnel kept: %q answered, want app", got)
	}

	second := intercept("second")
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials after the second intercept: %d, want 1 (the kept tunnel)", n)
	}
	if second.link("orders-0") != kept {
		t.Errorf("the second intercept did not take the kept tunnel")
	}
	if got := keep.Pods(key); len(got) != 0 {
		t.Errorf("still kept while intercepting: %v", got)
	}
	if got := answer(t, listenPort); got != "laptop" {
		t.Fatalf("re-intercepted: %q answered, want laptop", got)
	}
	if err := second.leave(ctx); err != nil {
		t.Fatal(err)
	}

	// The pod is replaced under the same name: the kept tunnel is not its.
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, agentPodObject("uid-2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	third := intercept("third")
	if n := d.dials.Load(); n != 2 {
		t.Errorf("dials after the pod's UID changed: %d, want 2", n)
	}
	select {
	case <-kept.Done():
	case <-time.After(5 * time.Second):
		t.Errorf("the tunnel kept to the old pod is still open")
	}
	if got := answer(t, listenPort); got != "laptop" {
		t.Fatalf("intercepted over a new tunnel: %q answered, want laptop", got)
	}
	if err := third.leave(ctx); err != nil {
		t.Fatal(err)
	}

	last := keep.Link(key, "orders-0")
	if last == nil {
		t.Fatal("nothing kept after the third leave")
	}
	keep.Close()
	select {
	case <-last.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Close left a kept tunnel open")
	}
	if got := keep.Pods(key); len(got) != 0 {
		t.Errorf("kept after Close: %v", got)
	}
	if got := answer(t, listenPort); got != "app" {
		t.Errorf("after Close: %q answered, want app", got)
	}
}

// TestKeptTunnelRefusedToken: a kept tunnel opened with another token
// (the agent's Secret replaced) is closed, not reused.
func TestKeptTunnelRefusedToken(t *testing.T) {
	token := []byte("0123456789abcdef-kept-tunnels-test")
	appPort := nameServer(t, "app")
	tunnelAddr, _ := loopbackAgent(t, token, appPort)
	d := &countingDialer{addr: tunnelAddr}
	c, err := d.DialPod(context.Background(), ns, "orders-0", 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := agent.Connect(context.Background(), c, tunnelConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	keep := &KeptLinks{}
	keep.put("k", "orders-0", "uid-1", token, l)
	if got := keep.take("k", "orders-0", "uid-1", []byte("another token")); got != nil {
		t.Fatal("a tunnel kept with another token was reused")
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the tunnel kept with another token is still open")
	}
}

func tunnelConfig(token []byte) tunnel.Config { return tunnel.DefaultConfig(token) }

// TestPredial: the tunnels opened during a rollout go to the intercept
// once each, only with the token they were opened with, and close does
// the rest.
func TestPredial(t *testing.T) {
	token := []byte("0123456789abcdef-kept-tunnels-test")
	tunnelAddr, listenPort := loopbackAgent(t, token, nameServer(t, "app"))
	d := &countingDialer{addr: tunnelAddr}
	ctx := context.Background()
	dialing := newTunnels(fake.NewClientset(), d, slog.New(slog.DiscardHandler), ns, "", token, agent.InterceptSpec{ListenPort: listenPort}, 1)
	dialing.path = agent.PathPortForward
	p := newPredial(ctx, dialing, nil)

	first, second, third := agentPodObject("uid-1"), agentPodObject("uid-2"), agentPodObject("uid-3")
	p.pod(first)
	p.pod(first) // seen again at the next look: no second dial
	p.pod(second)
	p.pod(third)
	l := p.take(ctx, first, token)
	if l == nil {
		t.Fatal("no tunnel for the first pod")
	}
	defer l.Close()
	if again := p.take(ctx, first, token); again != nil {
		t.Error("the first pod's tunnel was given twice")
	}
	if other := p.take(ctx, second, []byte("the Secret's new token")); other != nil {
		t.Error("a tunnel opened with the old token was given for the new one")
	}
	p.close() // waits for the dials under way, the third pod's among them
	if n := d.dials.Load(); n != 3 {
		t.Errorf("dials: %d, want 3 (one per pod)", n)
	}
	p.pod(agentPodObject("uid-4")) // after close: nothing
	if n := d.dials.Load(); n != 3 {
		t.Errorf("dials after close: %d, want 3", n)
	}
	select {
	case <-l.Done():
		t.Error("close closed a tunnel already taken")
	default:
	}
	if got := p.take(ctx, third, token); got != nil {
		t.Error("a tunnel survived close")
	}
}
