package netpol

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	client = Endpoint{Namespace: "shop", NamespaceLabels: map[string]string{"team": "shop"},
		PodLabels: map[string]string{"app": "client"}, IP: netip.MustParseAddr("10.42.0.5")}
	orders = Endpoint{Namespace: "shop", NamespaceLabels: map[string]string{"team": "shop"},
		PodLabels: map[string]string{"app": "orders"}, IP: netip.MustParseAddr("10.42.0.9"),
		NamedPorts: map[string]int32{"http": 8080}}
	monitor = Endpoint{Namespace: "ops", NamespaceLabels: map[string]string{"team": "ops"},
		PodLabels: map[string]string{"app": "prometheus"}, IP: netip.MustParseAddr("10.42.0.30")}
	outside = Endpoint{IP: netip.MustParseAddr("192.0.2.10")}
)

func policy(ns, name string, spec networkingv1.NetworkPolicySpec) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func port(p intstr.IntOrString) []networkingv1.NetworkPolicyPort {
	return []networkingv1.NetworkPolicyPort{{Port: &p}}
}

var (
	denyAllIngress = policy("shop", "deny-all", networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}})
	allowClientHTTP = policy("shop", "allow-client", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "orders"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "other")}}},
			{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}}, Ports: port(intstr.FromString("http"))},
		}})
	allowOpsNamespace = policy("shop", "allow-ops", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "orders"),
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "ops")}}}}})
	clientEgressDNSOnly = policy("shop", "client-egress", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "client"),
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: port(intstr.FromInt32(53))}}})
	allowRange = policy("shop", "range", networkingv1.NetworkPolicySpec{
		PodSelector: *sel("app", "orders"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(8000)), EndPort: ptr32(8100)}},
		}}})
)

func ptr(v intstr.IntOrString) *intstr.IntOrString { return &v }
func ptr32(v int32) *int32                         { return &v }

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name        string
		policies    []networkingv1.NetworkPolicy
		src, dst    Endpoint
		port        int32
		wantEgress  bool
		wantIngress bool
		wantRule    string // in the deciding verdict's Rule or Reason
	}{
		{"no policies", nil, client, orders, 8080, true, true, "no policy selects"},
		{"deny all ingress", []networkingv1.NetworkPolicy{denyAllIngress}, client, orders, 8080, true, false, "shop/deny-all selects the pod"},
		{"allowed by pod selector and named port", []networkingv1.NetworkPolicy{denyAllIngress, allowClientHTTP}, client, orders, 8080, true, true, "shop/allow-client ingress rule 2"},
		{"named port does not cover another port", []networkingv1.NetworkPolicy{allowClientHTTP}, client, orders, 9090, true, false, "rules allows TCP/9090"},
		{"pod selector is namespace-local", []networkingv1.NetworkPolicy{allowClientHTTP},
			Endpoint{Namespace: "ops", NamespaceLabels: map[string]string{"team": "ops"}, PodLabels: map[string]string{"app": "client"}}, orders, 8080, true, false, "denied"},
		{"namespace selector", []networkingv1.NetworkPolicy{denyAllIngress, allowOpsNamespace}, monitor, orders, 8080, true, true, "shop/allow-ops ingress rule 1"},
		{"egress policy allows only DNS", []networkingv1.NetworkPolicy{clientEgressDNSOnly}, client, orders, 8080, false, true, "shop/client-egress selects the pod"},
		{"egress DNS allowed", []networkingv1.NetworkPolicy{clientEgressDNSOnly}, client, orders, 53, true, true, "shop/client-egress egress rule 1"},
		{"ipBlock and port range", []networkingv1.NetworkPolicy{allowRange}, outside, orders, 8080, true, true, "shop/range ingress rule 1"},
		{"ipBlock except", []networkingv1.NetworkPolicy{allowRange}, Endpoint{IP: netip.MustParseAddr("192.0.2.200")}, orders, 8080, true, false, "denied"},
		{"port outside the range", []networkingv1.NetworkPolicy{allowRange}, outside, orders, 8200, true, false, "denied"},
		{"policy of another namespace does not apply", []networkingv1.NetworkPolicy{policy("ops", "deny", networkingv1.NetworkPolicySpec{})}, client, orders, 8080, true, true, "no policy selects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Evaluate(tt.policies, tt.src, tt.dst, corev1.ProtocolTCP, tt.port)
			if d.Egress.Allowed != tt.wantEgress || d.Ingress.Allowed != tt.wantIngress {
				t.Fatalf("egress %v ingress %v, want %v %v\n%+v", d.Egress.Allowed, d.Ingress.Allowed, tt.wantEgress, tt.wantIngress, d)
			}
			said := d.Egress.Rule + " " + d.Egress.Reason + " " + d.Ingress.Rule + " " + d.Ingress.Reason
			if !strings.Contains(said, tt.wantRule) {
				t.Errorf("decision %+v does not name %q", d, tt.wantRule)
			}
			if d.Allowed() != (tt.wantEgress && tt.wantIngress) {
				t.Errorf("Allowed() = %v", d.Allowed())
			}
		})
	}
}

func TestUDPNeedsItsOwnRule(t *testing.T) {
	d := Evaluate([]networkingv1.NetworkPolicy{clientEgressDNSOnly}, client, orders, corev1.ProtocolUDP, 53)
	if d.Egress.Allowed {
		t.Errorf("a TCP-only port rule allowed UDP: %+v", d.Egress)
	}
}

// FuzzEvaluate decodes arbitrary policies and checks that Evaluate never
// panics, is deterministic, and that a denial always names a selecting
// policy.
func FuzzEvaluate(f *testing.F) {
	for _, p := range []networkingv1.NetworkPolicy{denyAllIngress, allowClientHTTP, allowOpsNamespace, clientEgressDNSOnly, allowRange} {
		b, _ := json.Marshal(p.Spec)
		f.Add(b, uint16(8080))
	}
	f.Fuzz(func(t *testing.T, spec []byte, port uint16) {
		var s networkingv1.NetworkPolicySpec
		if json.Unmarshal(spec, &s) != nil {
			return
		}
		ps := []networkingv1.NetworkPolicy{policy("shop", "fuzz", s)}
		for _, src := range []Endpoint{client, monitor, outside} {
			a := Evaluate(ps, src, orders, corev1.ProtocolTCP, int32(port))
			b := Evaluate(ps, src, orders, corev1.ProtocolTCP, int32(port))
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Fatalf("not deterministic: %s vs %s", ja, jb)
			}
			for _, v := range []Verdict{a.Egress, a.Ingress} {
				if !v.Allowed && len(v.Selecting) == 0 {
					t.Fatalf("denied without a selecting policy: %+v", v)
				}
			}
		}
	})
}
