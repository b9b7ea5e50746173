//go:build integration

package integration

import (
	"context"
	"strconv"
	"testing"

	"github.com/tetherkube/tether/internal/agentspec"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestInterceptAgentResources: --agent-memory 48Mi:160Mi reaches the agent
// container of the pods the intercept runs in, the CPU keeps tether's
// defaults, and the intercept works with them.
func TestInterceptAgentResources(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	e.mustTether(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)), "--agent-memory", "48Mi:160Mi")...)
	e.requireAll(client, "laptop", 3)

	pods, err := e.cs.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("48Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(agentspec.DefaultCPULimit), corev1.ResourceMemory: resource.MustParse("160Mi")},
	}
	seen := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Spec.Containers {
			if c.Name != "tether-agent" {
				continue
			}
			seen++
			for _, l := range []struct {
				what      string
				want, got corev1.ResourceList
			}{{"requests", want.Requests, c.Resources.Requests}, {"limits", want.Limits, c.Resources.Limits}} {
				for name, q := range l.want {
					if g := l.got[name]; g.Cmp(q) != 0 {
						t.Errorf("pod %s: agent %s %s = %s, want %s", p.Name, l.what, name, g.String(), q.String())
					}
				}
			}
		}
	}
	if seen == 0 {
		t.Fatalf("no running pod of orders has the agent container: %d pods", len(pods.Items))
	}

	e.mustTether("rollback", "orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}
