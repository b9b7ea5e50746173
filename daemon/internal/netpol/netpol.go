// Package netpol computes, from NetworkPolicy objects alone, whether a
// connection from one endpoint to another is allowed, and names the policy
// and rule that decides it. It is the model `tether trace` compares with
// what a live probe sees (a CNI that does not enforce policies disagrees).
package netpol

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Endpoint is one end of a connection.
type Endpoint struct {
	// Namespace and NamespaceLabels are the pod's namespace; empty for an
	// address outside the cluster.
	Namespace       string
	NamespaceLabels map[string]string
	// PodLabels are nil for an address that is not a pod.
	PodLabels map[string]string
	IP        netip.Addr
	// NamedPorts maps the pod's container port names to numbers (for the
	// destination: policies may name ports).
	NamedPorts map[string]int32
}

// IsPod reports whether the endpoint is a pod (policies select pods only).
func (e Endpoint) IsPod() bool { return e.PodLabels != nil }

// Verdict is the decision for one direction.
type Verdict struct {
	Allowed bool `json:"allowed"`
	// Selecting names the policies that select the endpoint for this
	// direction ("ns/name"); none means everything is allowed.
	Selecting []string `json:"selecting"`
	// Rule names what allows the connection ("ns/name ingress rule 2"), or
	// is empty when it is denied or no policy applies.
	Rule string `json:"rule,omitempty"`
	// Reason says why, for people.
	Reason string `json:"reason"`
}

// Decision is both directions: egress from the source, ingress to the
// destination. The connection works only if both allow it.
type Decision struct {
	Egress  Verdict `json:"egress"`
	Ingress Verdict `json:"ingress"`
}

// Allowed reports whether both directions allow the connection.
func (d Decision) Allowed() bool { return d.Egress.Allowed && d.Ingress.Allowed }

// Evaluate decides a connection from src to dst on protocol/port.
func Evaluate(policies []networkingv1.NetworkPolicy, src, dst Endpoint, protocol corev1.Protocol, port int32) Decision {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	sorted := append([]networkingv1.NetworkPolicy(nil), policies...)
	sort.Slice(sorted, func(i, j int) bool {
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})
	return Decision{
		Egress:  evaluate(sorted, src, dst, protocol, port, networkingv1.PolicyTypeEgress),
		Ingress: evaluate(sorted, dst, src, protocol, port, networkingv1.PolicyTypeIngress),
	}
}

// evaluate decides one direction for subject (the pod the policies select)
// talking with peer; the port is always the destination's.
func evaluate(policies []networkingv1.NetworkPolicy, subject, peer Endpoint, protocol corev1.Protocol, port int32, dir networkingv1.PolicyType) Verdict {
	word := map[networkingv1.PolicyType]string{networkingv1.PolicyTypeIngress: "ingress", networkingv1.PolicyTypeEgress: "egress"}[dir]
	if !subject.IsPod() {
		return Verdict{Allowed: true, Reason: fmt.Sprintf("%s: not a pod, no policy applies", word)}
	}
	// Named ports are looked up on the destination: for ingress that is
	// the subject, for egress the peer.
	dst := subject
	if dir == networkingv1.PolicyTypeEgress {
		dst = peer
	}
	var v Verdict
	for _, p := range policies {
		if p.Namespace != subject.Namespace || !hasType(p, dir) || !matches(&p.Spec.PodSelector, subject.PodLabels) {
			continue
		}
		name := p.Namespace + "/" + p.Name
		v.Selecting = append(v.Selecting, name)
		if v.Allowed {
			continue
		}
		if dir == networkingv1.PolicyTypeIngress {
			for i, r := range p.Spec.Ingress {
				if peersMatch(r.From, p.Namespace, peer) && portsMatch(r.Ports, protocol, port, dst.NamedPorts) {
					v.Allowed, v.Rule = true, fmt.Sprintf("%s ingress rule %d", name, i+1)
					break
				}
			}
		} else {
			for i, r := range p.Spec.Egress {
				if peersMatch(r.To, p.Namespace, peer) && portsMatch(r.Ports, protocol, port, dst.NamedPorts) {
					v.Allowed, v.Rule = true, fmt.Sprintf("%s egress rule %d", name, i+1)
					break
				}
			}
		}
	}
	switch {
	case len(v.Selecting) == 0:
		v.Allowed, v.Reason = true, fmt.Sprintf("%s: no policy selects the pod, so all %s traffic is allowed", word, word)
	case v.Allowed:
		v.Reason = fmt.Sprintf("%s: allowed by %s", word, v.Rule)
	default:
		verb, their := "select", "their"
		if len(v.Selecting) == 1 {
			verb, their = "selects", "its"
		}
		v.Reason = fmt.Sprintf("%s: denied: %s %s the pod and none of %s rules allows %s/%d with this peer",
			word, strings.Join(v.Selecting, ", "), verb, their, protocol, port)
	}
	return v
}

// hasType reports whether p applies to dir, with the API's defaulting:
// without policyTypes, a policy is Ingress, and Egress too if it has egress
// rules.
func hasType(p networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(p.Spec.PolicyTypes) == 0 {
		return dir == networkingv1.PolicyTypeIngress || len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		if t == dir {
			return true
		}
	}
	return false
}

func matches(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false // an invalid selector selects nothing
	}
	return s.Matches(labels.Set(l))
}

// peersMatch: an empty list matches every peer; otherwise any one peer.
func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e Endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if peerMatches(p, policyNS, e) {
			return true
		}
	}
	return false
}

func peerMatches(p networkingv1.NetworkPolicyPeer, policyNS string, e Endpoint) bool {
	if p.IPBlock != nil {
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil || !e.IP.IsValid() || !cidr.Contains(e.IP) {
			return false
		}
		for _, ex := range p.IPBlock.Except {
			if x, err := netip.ParsePrefix(ex); err == nil && x.Contains(e.IP) {
				return false
			}
		}
		return true
	}
	if !e.IsPod() {
		return false // pod and namespace selectors match pods only
	}
	switch {
	case p.NamespaceSelector != nil && p.PodSelector != nil:
		return matches(p.NamespaceSelector, e.NamespaceLabels) && matches(p.PodSelector, e.PodLabels)
	case p.NamespaceSelector != nil:
		return matches(p.NamespaceSelector, e.NamespaceLabels)
	case p.PodSelector != nil:
		return e.Namespace == policyNS && matches(p.PodSelector, e.PodLabels)
	default:
		return false
	}
}

// portsMatch: an empty list matches every port; otherwise any one entry.
func portsMatch(ports []networkingv1.NetworkPolicyPort, protocol corev1.Protocol, port int32, named map[string]int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != protocol {
			continue
		}
		if p.Port == nil {
			return true // every port of the protocol
		}
		var lo int32
		if p.Port.Type == intstr.String {
			n, ok := named[p.Port.StrVal]
			if !ok {
				continue
			}
			lo = n
		} else {
			lo = p.Port.IntVal
		}
		hi := lo
		if p.EndPort != nil && p.Port.Type == intstr.Int {
			hi = *p.EndPort
		}
		if port >= lo && port <= hi {
			return true
		}
	}
	return false
}
