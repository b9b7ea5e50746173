package trace

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon/internal/netpol"
)

// policy evaluates the NetworkPolicies of the source's and each
// destination's namespace for every destination the Service step found.
// Policies apply after the Service address is translated, so they are
// evaluated against the endpoints (pods), on the endpoint's port.
func (tr *Tracer) policy(ctx context.Context, s *state) (Step, error) {
	if len(s.endpoints) == 0 {
		return skipped("no destination to evaluate policies for"), nil
	}
	policies := map[string][]networkingv1.NetworkPolicy{}
	nsLabels := map[string]map[string]string{}
	load := func(ns string) error {
		if _, ok := policies[ns]; ok || ns == "" {
			return nil
		}
		list, err := tr.CS.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list networkpolicies in %s: %w", ns, err)
		}
		policies[ns] = list.Items
		// Without access to the Namespace object, its name label is still
		// known: the API server sets it on every namespace.
		nsLabels[ns] = map[string]string{"kubernetes.io/metadata.name": ns}
		if n, err := tr.CS.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
			nsLabels[ns] = n.Labels
		}
		return nil
	}
	if err := load(s.src.Namespace); err != nil {
		return Step{}, err
	}
	src := podEndpoint(s.src, nsLabels[s.src.Namespace])
	res := &PolicyResult{}
	step := Step{Policy: res, Status: OK}
	denied := 0
	var lastDenied string
	for _, e := range s.endpoints {
		if e.Port == 0 {
			continue
		}
		dst := netpol.Endpoint{}
		if ip, err := netip.ParseAddr(e.Address); err == nil {
			dst.IP = ip
		}
		name := e.Address
		if pod := s.pods[e.Address]; pod != nil {
			if err := load(pod.Namespace); err != nil {
				return Step{}, err
			}
			dst, name = podEndpoint(pod, nsLabels[pod.Namespace]), "pod "+pod.Name
		}
		var all []networkingv1.NetworkPolicy
		for _, ps := range policies {
			all = append(all, ps...)
		}
		d := netpol.Evaluate(all, src, dst, corev1.ProtocolTCP, e.Port)
		res.Verdicts = append(res.Verdicts, PolicyVerdict{Destination: name, Port: e.Port, Decision: d})
		verdict := "allowed"
		if !d.Allowed() {
			verdict, denied = "DENIED", denied+1
			lastDenied = deniedReason(d)
		}
		step.Details = append(step.Details, fmt.Sprintf("to %s port %d: %s; %s; %s", name, e.Port, verdict, d.Egress.Reason, d.Ingress.Reason))
	}
	switch {
	case len(res.Verdicts) == 0:
		return skipped("no destination port to evaluate policies for"), nil
	case denied == len(res.Verdicts):
		s.policyDenies = true
		step.Status, step.Summary = Broken, "the NetworkPolicies deny this connection: "+lastDenied
	case denied > 0:
		step.Status, step.Summary = Warn, fmt.Sprintf("the NetworkPolicies deny %d of %d destinations: %s", denied, len(res.Verdicts), lastDenied)
	default:
		step.Summary = allowedSummary(res.Verdicts[0].Decision)
	}
	return step, nil
}

func podEndpoint(p *corev1.Pod, nsLabels map[string]string) netpol.Endpoint {
	e := netpol.Endpoint{Namespace: p.Namespace, NamespaceLabels: nsLabels, PodLabels: map[string]string{}, NamedPorts: map[string]int32{}}
	for k, v := range p.Labels {
		e.PodLabels[k] = v
	}
	if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
		e.IP = ip
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				e.NamedPorts[cp.Name] = cp.ContainerPort
			}
		}
	}
	return e
}

func deniedReason(d netpol.Decision) string {
	if !d.Egress.Allowed {
		return d.Egress.Reason
	}
	return d.Ingress.Reason
}

func allowedSummary(d netpol.Decision) string {
	if len(d.Egress.Selecting) == 0 && len(d.Ingress.Selecting) == 0 {
		return "allowed: no NetworkPolicy selects either pod"
	}
	return "allowed: " + d.Egress.Reason + "; " + d.Ingress.Reason
}
