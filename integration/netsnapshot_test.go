//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/integration/cluster"
)

// netSnapshot keeps, at the moment it is called, what a hung request from
// a pod needs to be understood: the namespace's pods (node, IP) and
// EndpointSlices, and each node's iptables, conntrack table, routes and
// neighbours. It writes them under $TMPDIR/tether-it-dumps/NS-net-TIME/
// and returns that folder.
func (e *env) netSnapshot() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(os.TempDir(), "tether-it-dumps", e.ns+"-net-"+time.Now().Format("150405.000"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Logf("net snapshot: %v", err)
		return ""
	}
	files := cluster.NetState(ctx, cluster.DefaultConfig(filepath.Dir(e.kubeconfig)))
	files["k8s.txt"] = e.podsAndEndpoints(ctx)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			e.t.Logf("net snapshot: %v", err)
		}
	}
	return dir
}

// podsAndEndpoints lists the namespace's pods and EndpointSlices, one line
// each, with the time it was read.
func (e *env) podsAndEndpoints(ctx context.Context) string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %s\n", time.Now().Format(time.RFC3339Nano))
	pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(&b, "pods: %v\n", err)
	} else {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s node=%s ip=%s phase=%s deleting=%v\n", p.Name, p.Spec.NodeName, p.Status.PodIP, p.Status.Phase, p.DeletionTimestamp != nil)
		}
	}
	slices, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(&b, "endpointslices: %v\n", err)
		return b.String()
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	flag := func(p *bool) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			fmt.Fprintf(&b, "endpoints %s %v node=%s ready=%s serving=%s terminating=%s\n", s.Name, ep.Addresses, str(ep.NodeName),
				flag(ep.Conditions.Ready), flag(ep.Conditions.Serving), flag(ep.Conditions.Terminating))
		}
	}
	return b.String()
}
