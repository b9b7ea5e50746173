//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/daemon"
)

// trace runs `tether trace FROM TO -o json` and returns the report and the
// exit code.
func (e *env) trace(from, to string) (daemon.TraceReport, int) {
	e.t.Helper()
	stdout, stderr, code := e.tether(agentImage("trace", from, to, "-o", "json", "-n", e.ns)...)
	var rep daemon.TraceReport
	if code == 0 || code == 3 {
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			e.t.Fatalf("trace %s %s: -o json output: %v\n%s\nstderr:\n%s", from, to, err, stdout, stderr)
		}
	}
	e.t.Logf("trace %s %s: exit %d, %s\n%s", from, to, code, rep.Conclusion, stderr)
	return rep, code
}

// step returns the report's step named name.
func step(t *testing.T, rep daemon.TraceReport, name string) daemon.TraceStep {
	t.Helper()
	for _, s := range rep.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %s step in the report: %+v", name, rep)
	return daemon.TraceStep{}
}

func reportText(rep daemon.TraceReport) string {
	b, _ := json.MarshalIndent(rep, "", "  ")
	return string(b)
}

// TestTraceHealthyPath: from a client pod to the demo Service, by Service
// reference, by DNS name, by URL and to the pod itself: every step healthy.
// The namespace enforces the restricted Pod Security level, which the
// trace agent (no capabilities, non-root) must satisfy.
func TestTraceHealthyPath(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	orders := e.firstPod("orders")

	rep, code := e.trace("pod/"+client, "svc/orders")
	if code != 0 || rep.FirstBroken != "" || rep.Conclusion != "path healthy" {
		t.Fatalf("exit %d, want a healthy path:\n%s", code, reportText(rep))
	}
	for _, name := range []string{"source", "dns", "service", "policy", "probe"} {
		if s := step(t, rep, name); s.Status != daemon.TraceOK {
			t.Errorf("step %s is %s, want ok: %s", name, s.Status, s.Summary)
		}
	}
	dns := step(t, rep, "dns").DNS
	if dns.Answered != "orders."+e.ns+".svc.cluster.local." || len(dns.Addresses) != 1 || dns.Addresses[0] != svc.Spec.ClusterIP || len(dns.Queries) != 1 {
		t.Errorf("dns step: answered %q with %v after %d queries; want orders.%s.svc.cluster.local. -> %s at the first query",
			dns.Answered, dns.Addresses, len(dns.Queries), e.ns, svc.Spec.ClusterIP)
	}
	if dns.ResolvConf.Ndots != 5 || len(dns.ResolvConf.Search) == 0 || dns.ResolvConf.Search[0] != e.ns+".svc.cluster.local" {
		t.Errorf("resolv.conf as read from the pod: %+v", dns.ResolvConf)
	}
	sv := step(t, rep, "service").Service
	if sv.Port == nil || sv.Port.Port != 80 || sv.Port.TargetPort != "http" || len(sv.Endpoints) != 1 ||
		!sv.Endpoints[0].Ready || sv.Endpoints[0].Pod != orders || sv.Endpoints[0].Port != 8080 {
		t.Errorf("service step: %+v", sv)
	}
	for _, p := range step(t, rep, "probe").Probe.Probes {
		if !p.Connected || p.HTTPStatus != 200 {
			t.Errorf("probe %s %s: connected %v, HTTP %d %s", p.What, p.Address, p.Connected, p.HTTPStatus, p.HTTPError)
		}
	}

	// A URL, traced from a deployment's pod: the pod is picked and named.
	rep, code = e.trace("deploy/orders", "http://orders/healthz")
	if code != 0 || rep.Source.Pod != orders || rep.Source.PickedFrom != "deploy/orders" {
		t.Errorf("trace from deploy/orders: exit %d, source %+v:\n%s", code, rep.Source, reportText(rep))
	}
	// Straight to the pod, no DNS and no Service.
	rep, code = e.trace(client, "pod/"+orders+":8080")
	if code != 0 || step(t, rep, "dns").Status != daemon.TraceSkipped {
		t.Errorf("trace to pod/%s:8080: exit %d:\n%s", orders, code, reportText(rep))
	}

	// The text form ends with the conclusion.
	out, _, code := e.tether(agentImage("trace", client, "svc/orders", "-n", e.ns)...)
	if code != 0 || !strings.Contains(out, "\npath healthy (traced in ") || !strings.Contains(out, "ok      dns") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}
}

// TestTraceFindsFirstBrokenStep breaks the path in four ways, one at a
// time, and checks that the trace names the right first broken step.
func TestTraceFindsFirstBrokenStep(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(1)
	client := e.clientPod("client")
	orders := e.firstPod("orders")
	ctx := context.Background()

	t.Run("name that does not exist", func(t *testing.T) {
		rep, code := e.trace(client, "no-such-svc:80")
		if code != 3 || rep.FirstBroken != "dns" {
			t.Fatalf("exit %d, first broken %q; want 3, dns:\n%s", code, rep.FirstBroken, reportText(rep))
		}
		dns := step(t, rep, "dns").DNS
		// ndots 5: every search domain, then the name itself, all NXDOMAIN.
		if want := len(dns.ResolvConf.Search) + 1; len(dns.Queries) != want {
			t.Errorf("%d queries, want %d (the whole search list and the name)", len(dns.Queries), want)
		}
		for i, q := range dns.Queries {
			// The last query, for the name itself, goes to CoreDNS's
			// upstream, which this offline cluster lacks: SERVFAIL, or no
			// answer within the trace's timeout.
			last := i == len(dns.Queries)-1 && (q.Rcode == "SERVFAIL" || q.Error == "timeout")
			if q.Rcode != "NXDOMAIN" && !last {
				t.Errorf("query %s: rcode %q, want NXDOMAIN", q.Name, q.Rcode)
			}
		}
	})

	t.Run("policy denies the port", func(t *testing.T) {
		tcp := corev1.ProtocolTCP
		port := intstr.FromInt32(9999)
		np := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-only-9999"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}}}},
			},
		}
		if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer e.cs.NetworkingV1().NetworkPolicies(e.ns).Delete(ctx, np.Name, metav1.DeleteOptions{})
		rep, code := e.trace(client, "svc/orders")
		if code != 3 || rep.FirstBroken != "policy" {
			t.Fatalf("exit %d, first broken %q; want 3, policy:\n%s", code, rep.FirstBroken, reportText(rep))
		}
		if pol := step(t, rep, "policy"); !strings.Contains(pol.Summary, e.ns+"/orders-only-9999") {
			t.Errorf("the policy step does not name the policy: %s", pol.Summary)
		}
	})

	t.Run("readiness probe failing", func(t *testing.T) {
		if out, ok := e.exec(orders, "/tether-demo", "post", "http://127.0.0.1:8080/healthz/fail"); !ok {
			t.Fatalf("break healthz: %s", out)
		}
		defer e.exec(orders, "/tether-demo", "post", "http://127.0.0.1:8080/healthz/ok")
		e.waitEndpointReady("orders", false)
		rep, code := e.trace(client, "svc/orders")
		if code != 3 || rep.FirstBroken != "service" {
			t.Fatalf("exit %d, first broken %q; want 3, service:\n%s", code, rep.FirstBroken, reportText(rep))
		}
		eps := step(t, rep, "service").Service.Endpoints
		if len(eps) != 1 || eps[0].Ready || !strings.Contains(eps[0].Reason, "Readiness probe failed") || !strings.Contains(eps[0].Reason, "503") {
			t.Errorf("endpoints %+v; want one not ready, with the failing probe as the reason", eps)
		}
	})
	e.waitEndpointReady("orders", true)

	t.Run("selector matches no pod", func(t *testing.T) {
		s, err := e.cs.CoreV1().Services(e.ns).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.Selector = map[string]string{"app": "ordrs"}
		if _, err := e.cs.CoreV1().Services(e.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		rep, code := e.trace(client, "svc/orders")
		if code != 3 || rep.FirstBroken != "service" {
			t.Fatalf("exit %d, first broken %q; want 3, service:\n%s", code, rep.FirstBroken, reportText(rep))
		}
		if sum := step(t, rep, "service").Summary; !strings.Contains(sum, "app=ordrs matches no pod") || !strings.Contains(sum, "app=orders") {
			t.Errorf("the service step should name the selector and hint at the pods' labels: %s", sum)
		}
	})
}

// waitEndpointReady waits until the Service's only endpoint is (not) ready.
func (e *env) waitEndpointReady(service string, ready bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return false, nil
		}
		for _, sl := range list.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready == ready {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("endpoint of %s never became ready=%v: %v", service, ready, err)
	}
}

// TestTraceBadInput: bad names and destinations get clear errors, exit 2,
// and leave the pods as they were (no ephemeral container added).
func TestTraceBadInput(t *testing.T) {
	e := newEnv(t)
	client := e.clientPod("client")
	tests := []struct {
		from, to, want string
	}{
		{"pod/nope", "svc/orders", `no pod "nope"`},
		{"deploy/nope", "svc/orders", `no deployment named "nope"`},
		{client, "deploy/orders", "not deploy"},
		{client, "pod/orders", "needs a port"},
		{client, "svc/orders:99999", "out of range"},
		{client, "ftp://x", "http:// and https://"},
	}
	for _, tt := range tests {
		_, stderr, code := e.tether(agentImage("trace", tt.from, tt.to, "-n", e.ns)...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("trace %s %s: exit %d, stderr %q; want 2 and %q", tt.from, tt.to, code, stderr, tt.want)
		}
	}
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), client, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.EphemeralContainers) != 0 {
		t.Errorf("bad input added ephemeral containers: %+v", p.Spec.EphemeralContainers)
	}
}
