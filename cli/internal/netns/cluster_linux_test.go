//go:build integration

package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/tunnel"
)

// The cluster tests run CMD in the namespace mode against the local
// cluster, with a Dial that is the real one's last leg: a tunnel to a
// tether agent (serving the run job) in a pod, over a client-go
// port-forward, and the agent's dial streams. They need KUBECONFIG and
// TETHER_AGENT_IMAGE (an agent with the run job, e.g. from `make
// agent-image`), else the local cluster's (as the tests in integration/):
//
//	KUBECONFIG=... TETHER_AGENT_IMAGE=... go test -tags integration -run TestCluster ./cli/internal/netns/

type clusterEnv struct {
	t       testing.TB
	rc      *rest.Config
	cs      *kubernetes.Clientset
	ns      string
	link    *agent.Link
	svcIP   string // Service orders
	podIP   string // its pod
	dnsIP   string // kube-dns
	cluster []netip.Prefix
}

const gwPort = 7777

func newClusterEnv(t testing.TB) *clusterEnv {
	kc, image := clusterKubeconfig(), os.Getenv("TETHER_AGENT_IMAGE")
	if image == "" {
		image = cluster.AgentImage
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatalf("no cluster to test against (kubeconfig %s): %v; run `make cluster-up`", kc, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	e := &clusterEnv{t: t, rc: rc, cs: cs, ns: "it-netns-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:min(30, len(t.Name()))] + "-" + hex.EncodeToString(suffix)}
	e.ns = strings.ReplaceAll(strings.ToLower(e.ns), "_", "-")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns, Labels: map[string]string{"tether.dev/test": "true"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.link != nil {
			e.link.Close()
		}
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{})
	})
	token := make([]byte, 24)
	_, _ = rand.Read(token)
	tok := hex.EncodeToString(token)
	never := corev1.PullNever
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: "orders", Labels: map[string]string{"app": "orders"}}, Spec: corev1.PodSpec{
			Hostname: "orders-0", Subdomain: "hl", // orders-0.hl: a name of the headless Service hl
			Containers: []corev1.Container{{
				Name: "app", Image: cluster.DemoImage, ImagePullPolicy: never, Args: []string{"serve", ":8080"}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "gw", Labels: map[string]string{"app": "gw"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "agent", Image: image, ImagePullPolicy: never,
			Args: []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", gwPort), "--token-env", "TETHER_TOKEN", "--serve", "run", "--no-record"},
			Env:  []corev1.EnvVar{{Name: "TETHER_TOKEN", Value: tok}}}}}},
	}
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "orders"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "orders"},
		Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.svcIP = svc.Spec.ClusterIP
	if _, err := cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hl"}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone,
		Selector:  map[string]string{"app": "orders"},
		Ports:     []corev1.ServicePort{{Port: 8080}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"orders", "gw"} {
		p := e.waitRunning(ctx, name)
		if name == "orders" {
			e.podIP = p.Status.PodIP
		}
	}
	dns, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.dnsIP = dns.Spec.ClusterIP
	// The cluster's ranges, as /16s around a Service and a pod address
	// (the local cluster's are 10.43.0.0/16 and 10.42.0.0/16).
	for _, ip := range []string{e.svcIP, e.podIP} {
		p, err := netip.MustParseAddr(ip).Prefix(16)
		if err != nil {
			t.Fatal(err)
		}
		e.cluster = append(e.cluster, p)
	}

	addr, stop, err := cluster.ForwardPort(ctx, rc, e.ns, "gw", gwPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if e.link, err = agent.Connect(ctx, conn, tunnel.DefaultConfig([]byte(tok))); err != nil {
		t.Fatalf("tunnel to the agent: %v", err)
	}
	// Ready means a caller of the Service is served: kube-proxy routes
	// the ClusterIP a moment after the pods are ready.
	e.waitDial(ctx, func(err error) bool { return err == nil }, e.svcIP+":80", e.podIP+":8080")
	return e
}

// waitDial waits until a dial from the agent's pod to every addr gives an
// error for which done is true (nil: connected; non-nil: refused), for up
// to a minute: kube-proxy and the policy controller apply changes a moment
// after the API has them.
func (e *clusterEnv) waitDial(ctx context.Context, done func(error) bool, addrs ...string) {
	e.t.Helper()
	for _, addr := range addrs {
		var err error
		for start := time.Now(); ; time.Sleep(300 * time.Millisecond) {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var c net.Conn
			c, err = e.link.Dial(dctx, addr)
			cancel()
			if err == nil {
				c.Close()
			}
			if done(err) {
				break
			}
			if time.Since(start) > time.Minute {
				e.t.Fatalf("a dial to %s from the agent's pod still gives %v after a minute", addr, err)
			}
		}
	}
}

func (e *clusterEnv) waitRunning(ctx context.Context, name string) *corev1.Pod {
	for {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			ready := true
			for _, c := range p.Status.ContainerStatuses {
				ready = ready && c.Ready
			}
			if ready {
				return p
			}
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("pod %s is not running: %v", name, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// resolvConf is what the kubelet writes into a pod of the namespace.
func (e *clusterEnv) resolvConf() []byte {
	return []byte(fmt.Sprintf("nameserver %s\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", e.dnsIP, e.ns))
}

func (e *clusterEnv) config(t testing.TB, argv ...string) Config {
	cfg := testConfig(t, &fakeCluster{}, argv...)
	cfg.Dial, cfg.Cluster, cfg.ResolvConf = e.link.Dial, e.cluster, e.resolvConf()
	return cfg
}

// TestClusterRun: a static Go binary under Run resolves and reaches the
// cluster through a real agent; a NetworkPolicy denying the agent pod's
// egress denies CMD too.
func TestClusterRun(t *testing.T) {
	if unprivileged(t) {
		return
	}
	e := newClusterEnv(t)
	fqdn := "orders." + e.ns + ".svc.cluster.local"
	steps := []string{
		"resolve:orders",
		"resolve:" + fqdn,
		"resolvetcp:orders",
		"resolve:kubernetes.default",
		"resolve:orders-0.hl",
		"http:http://orders/whoami",
		"http:http://" + fqdn + "/whoami",
		"http:http://" + e.podIP + ":8080/whoami",
		"httpconc:http://orders/whoami:200",
		"upload:http://orders/upload:10485760",
		"download:http://orders/bytes:10485760",
	}
	_, rc := startRun(t, e.config(t, append([]string{os.Getenv(probeEnv)}, steps...)...))
	r := waitResult(t, rc)
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, r.out)
	}
	t.Logf("CMD printed:\n%s", r.out)
	requireSteps(t, r, steps...)
	for _, want := range []string{"resolve:orders ok " + e.svcIP, "resolve:" + fqdn + " ok " + e.svcIP, "resolvetcp:orders ok " + e.svcIP, "resolve:orders-0.hl ok " + e.podIP, "/whoami ok 200"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("CMD's output lacks %q", want)
		}
	}

	// Deny the agent pod's egress but DNS: CMD's connections are refused too.
	ctx := context.Background()
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dnsPort := intstr.FromInt32(53)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "gw-dns-only"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "gw"}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dnsPort}, {Protocol: &tcp, Port: &dnsPort}}}},
	}}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Enforced when both the ClusterIP and the pod IP are refused: the
	// controller applies a policy's rules a moment after it is created.
	e.waitDial(ctx, func(err error) bool { return err != nil }, e.svcIP+":80", e.podIP+":8080")
	steps = []string{"refused:" + e.svcIP + ":80", "refused:" + e.podIP + ":8080", "resolve:orders"}
	_, rc = startRun(t, e.config(t, append([]string{os.Getenv(probeEnv)}, steps...)...))
	r = waitResult(t, rc)
	t.Logf("with the policy, CMD printed:\n%s", r.out)
	if r.err != nil || r.status != 0 {
		t.Errorf("Run = %d, %v", r.status, r.err)
	}
	requireSteps(t, r, steps...)
}

// BenchmarkCluster compares, in one run, CMD in the namespace mode (TUN,
// gVisor's stack, a tunnel to the agent over a port-forward, the agent's
// dial to the Service) with the baseline, the probe on the
// machine through a raw client-go port-forward to the Service's pod:
//
//	KUBECONFIG=... TETHER_AGENT_IMAGE=... go test -tags integration -run '^$' -bench Cluster -benchtime 1x ./cli/internal/netns/
func BenchmarkCluster(b *testing.B) {
	e := newClusterEnv(b)
	probe := benchProbe(b)
	fwd, stop, err := cluster.ForwardPort(context.Background(), e.rc, e.ns, "orders", 8080)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	// The tunnel without the namespace: a local listener whose
	// connections go through the agent's dial streams, to split the cost
	// between tether's tunnel and the namespace's stack.
	tl := listenLocal(b)
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				out, err := e.link.Dial(context.Background(), e.svcIP+":80")
				if err != nil {
					c.Close()
					return
				}
				splice(c, out, nil)
			}()
		}
	}()
	raw, tun, ns, nsIP := "http://"+fwd, "http://"+tl.Addr().String(), "http://orders", "http://"+e.svcIP
	const mb100 = "104857600"
	for b.Loop() {
		tn := direct(b, probe, "httpbench:"+tun+"/whoami:1000", "httpconnbench:"+tun+"/whoami:1000")
		b.ReportMetric(tn["httpbench_p50"]/1e3, "tunnel-keepalive-p50-µs")
		b.ReportMetric(tn["httpconnbench_p50"]/1e3, "tunnel-newconn-p50-µs")
		d := direct(b, probe, "httpbench:"+raw+"/whoami:1000", "httpconnbench:"+raw+"/whoami:1000")
		n := inNSConfig(b, e.config(b, probe, "httpbench:"+ns+"/whoami:1000", "httpconnbench:"+nsIP+"/whoami:1000", "dnsbench:orders:1000"))
		// The pod's nameserver through the tunnel, without CMD's resolver
		// and the namespace: what a lookup costs at least.
		res := newResolver(e.link.Dial, []string{e.dnsIP + ":53"}, nil, nil, slog.New(slog.DiscardHandler))
		lat := make([]time.Duration, 1000)
		for i := range lat {
			start := time.Now()
			if _, err := res.resolve(context.Background(), query(b, uint16(i), "orders."+e.ns+".svc.cluster.local.", 0)); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		res.close()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[500].Microseconds()), "tunnel-dns-query-p50-µs")
		b.ReportMetric(n["httpbench_p50"]/1e3, "ns-keepalive-p50-µs")
		b.ReportMetric(d["httpbench_p50"]/1e3, "pf-keepalive-p50-µs")
		b.ReportMetric(n["httpbench_p50"]/d["httpbench_p50"], "keepalive-ratio")
		b.ReportMetric(n["httpconnbench_p50"]/1e3, "ns-newconn-by-IP-p50-µs")
		b.ReportMetric(d["httpconnbench_p50"]/1e3, "pf-newconn-p50-µs")
		b.ReportMetric(n["httpconnbench_p50"]/d["httpconnbench_p50"], "newconn-ratio")
		b.ReportMetric(n["httpconnbench_errors"], "ns-newconn-errors")
		b.ReportMetric(d["httpconnbench_errors"], "pf-newconn-errors")
		b.ReportMetric(n["dnsbench_p50"]/1e3, "ns-lookup-p50-µs")

		tn = direct(b, probe, "download:"+tun+"/bytes:"+mb100, "upload:"+tun+"/upload:"+mb100)
		b.ReportMetric(tn["download_mbps"], "tunnel-down-MB/s")
		b.ReportMetric(tn["upload_mbps"], "tunnel-up-MB/s")
		d = direct(b, probe, "download:"+raw+"/bytes:"+mb100, "upload:"+raw+"/upload:"+mb100)
		n = inNSConfig(b, e.config(b, probe, "download:"+ns+"/bytes:"+mb100, "upload:"+ns+"/upload:"+mb100))
		b.ReportMetric(n["download_mbps"]/d["download_mbps"], "download-ratio")
		b.ReportMetric(n["upload_mbps"]/d["upload_mbps"], "upload-ratio")
		b.ReportMetric(n["download_mbps"], "ns-down-MB/s")
		b.ReportMetric(d["download_mbps"], "pf-down-MB/s")
		b.ReportMetric(n["upload_mbps"], "ns-up-MB/s")
		b.ReportMetric(d["upload_mbps"], "pf-up-MB/s")
	}
}

// TestClusterLanguages: a Python script (glibc's resolver) and a Java
// program (the JVM's) under Run resolve and reach the cluster through a
// real agent.
func TestClusterLanguages(t *testing.T) {
	if unprivileged(t) {
		return
	}
	e := newClusterEnv(t)
	fqdn := "orders." + e.ns + ".svc.cluster.local"
	for _, argv := range [][]string{
		{"python3", testdataFile(t, "probe.py")},
		{"java", "-XX:TieredStopAtLevel=1", testdataFile(t, "Probe.java")},
	} {
		t.Run(argv[0], func(t *testing.T) {
			steps := []string{
				"resolve:orders",
				"resolve:" + fqdn,
				"resolve:orders-0.hl",
				"http:http://orders/whoami",
				"http:http://" + e.podIP + ":8080/whoami",
			}
			_, rc := startRun(t, e.config(t, append(argv, steps...)...))
			r := waitResult(t, rc)
			if r.err != nil {
				t.Fatalf("Run: %v\n%s", r.err, r.out)
			}
			t.Logf("CMD printed:\n%s", r.out)
			requireSteps(t, r, steps...)
			for _, want := range []string{"resolve:orders ok " + e.svcIP, "resolve:" + fqdn + " ok " + e.svcIP, "resolve:orders-0.hl ok " + e.podIP, "/whoami ok 200"} {
				if !strings.Contains(r.out, want) {
					t.Errorf("CMD's output lacks %q", want)
				}
			}
		})
	}
}
