// Package clusternet finds the cluster's address ranges: the Service
// CIDRs and the pod CIDRs, which a local process's connections to the
// cluster are sent to. Each range comes with how it was found, since the
// best source is not always readable.
package clusternet

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Ranges are the cluster's address ranges.
type Ranges struct {
	Services       []string
	ServicesSource string
	Pods           []string
	PodsSource     string
}

// Find reads the ranges, trying the most exact source first:
//   - Services: the ServiceCIDR objects (networking.k8s.io/v1), else the
//     range the API server names when a dry-run Service asks for a
//     clusterIP outside it, else the prefixes covering the ClusterIPs of
//     the Services the user may list;
//   - pods: the nodes' spec.podCIDRs, else the prefixes covering the IPs of
//     the pods the user may list.
//
// namespace is where the dry-run Service is tried and, when the cluster
// cannot be listed, what is listed.
func Find(ctx context.Context, cs kubernetes.Interface, namespace string) (Ranges, error) {
	var r Ranges
	var err error
	r.Services, r.ServicesSource, err = serviceCIDRs(ctx, cs, namespace)
	if err != nil {
		return r, err
	}
	r.Pods, r.PodsSource, err = podCIDRs(ctx, cs, namespace)
	return r, err
}

func serviceCIDRs(ctx context.Context, cs kubernetes.Interface, namespace string) ([]string, string, error) {
	var why []string
	if l, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) > 0 {
		var out []string
		for _, sc := range l.Items {
			out = append(out, sc.Spec.CIDRs...)
		}
		return dedupe(out), "the cluster's ServiceCIDR objects", nil
	} else if err != nil {
		why = append(why, "ServiceCIDR objects: "+short(err))
	} else {
		why = append(why, "no ServiceCIDR object")
	}
	var out []string
	for _, ip := range []string{"203.0.113.1", "2001:db8::1"} {
		cidr, err := dryRunRange(ctx, cs, namespace, ip)
		if err != nil {
			why = append(why, "dry-run Service: "+short(err))
			break
		}
		if cidr != "" {
			out = append(out, cidr)
		}
	}
	if len(out) > 0 {
		return dedupe(out), "the range the API server named for a dry-run Service", nil
	}
	ns := ""
	l, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		ns = namespace
		if l, err = cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err != nil {
			return nil, "", fmt.Errorf("find the cluster's Service range (%s): list Services: %w", strings.Join(why, "; "), err)
		}
	}
	var ips []string
	for _, s := range l.Items {
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				ips = append(ips, ip)
			}
		}
	}
	return Cover(ips, 16, 112), fmt.Sprintf("covering the ClusterIPs of %d Services%s (%s)", len(l.Items), where(ns), strings.Join(why, "; ")), nil
}

// validRange is how the API server names its range when a clusterIP is
// outside it: "... The range of valid IPs is 10.43.0.0/16".
var validRange = regexp.MustCompile(`range of valid IPs is ([0-9a-fA-F.:]+/[0-9]+)`)

// dryRunRange asks the API server to create, in a dry run, a Service with
// clusterIP ip; it returns the range the refusal names, "" when the API
// server accepted it or named none for that family.
func dryRunRange(ctx context.Context, cs kubernetes.Interface, namespace, ip string) (string, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tether-range-probe-"},
		Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []corev1.ServicePort{{Port: 80}}},
	}
	_, err := cs.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return "", nil
	}
	if m := validRange.FindStringSubmatch(err.Error()); m != nil {
		return m[1], nil
	}
	if strings.Contains(err.Error(), "forbidden") || strings.Contains(err.Error(), "Forbidden") {
		return "", err
	}
	return "", nil // e.g. a family the cluster does not serve
}

func podCIDRs(ctx context.Context, cs kubernetes.Interface, namespace string) ([]string, string, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	var why string
	if err == nil {
		var out []string
		for _, n := range nodes.Items {
			out = append(out, n.Spec.PodCIDRs...)
			if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
				out = append(out, n.Spec.PodCIDR)
			}
		}
		if len(out) > 0 {
			return dedupe(out), fmt.Sprintf("the spec.podCIDRs of %d nodes", len(nodes.Items)), nil
		}
		why = "the nodes have no spec.podCIDRs (the network plugin assigns addresses itself)"
	} else {
		why = "nodes: " + short(err)
	}
	ns := ""
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		ns = namespace
		if pods, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
			return nil, "", fmt.Errorf("find the cluster's pod range (%s): list pods: %w", why, err)
		}
	}
	var ips []string
	for _, p := range pods.Items {
		if p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
	}
	return Cover(ips, 16, 64), fmt.Sprintf("covering the IPs of %d pods%s (%s)", len(ips), where(ns), why), nil
}

// Cover returns, per address family, the smallest prefix holding every
// address, but never longer than max4 (IPv4) or max6 (IPv6) bits: the
// addresses seen are a sample of the range.
func Cover(ips []string, max4, max6 int) []string {
	var v4, v6 []netip.Addr
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []string
	if p, ok := common(v4, max4); ok {
		out = append(out, p.String())
	}
	if p, ok := common(v6, max6); ok {
		out = append(out, p.String())
	}
	return out
}

func common(addrs []netip.Addr, max int) (netip.Prefix, bool) {
	if len(addrs) == 0 {
		return netip.Prefix{}, false
	}
	bits := min(max, addrs[0].BitLen())
	for _, a := range addrs[1:] {
		for bits > 0 {
			p, _ := addrs[0].Prefix(bits)
			if p.Contains(a) {
				break
			}
			bits--
		}
	}
	p, _ := addrs[0].Prefix(bits)
	return p, true
}

func dedupe(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func where(ns string) string {
	if ns == "" {
		return " in all namespaces"
	}
	return " in namespace " + ns
}

// short keeps an API error's message to its first line.
func short(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
