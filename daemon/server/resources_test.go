package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/agentspec"
)

// TestAgentResources checks how the flags' values replace tether's defaults.
func TestAgentResources(t *testing.T) {
	list := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	tests := []struct {
		name         string
		in           daemon.AgentResources
		budget       int64
		wantRequests corev1.ResourceList
		wantLimits   corev1.ResourceList
	}{
		{"both given", daemon.AgentResources{CPURequest: "50m", CPULimit: "1", MemoryRequest: "48Mi", MemoryLimit: "160Mi"}, 0,
			list("50m", "48Mi"), list("1", "160Mi")},
		{"request alone keeps the default limit", daemon.AgentResources{MemoryRequest: "64Mi"}, 0,
			list("10m", "64Mi"), list(agentspec.DefaultCPULimit, "128Mi")},
		{"request alone above the default limit raises it", daemon.AgentResources{CPURequest: "2"}, 0,
			list("2", "32Mi"), list("2", "128Mi")},
		{"limit alone below the default request lowers it", daemon.AgentResources{CPULimit: "5m"}, 0,
			list("5m", "32Mi"), list("5m", "128Mi")},
		{"default memory limit follows the budget", daemon.AgentResources{CPULimit: "1"}, 8 << 20,
			list("10m", "32Mi"), list("1", "72Mi")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := agentResources(tt.in, tt.budget)
			if err != nil {
				t.Fatal(err)
			}
			cmpQ := cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })
			if diff := cmp.Diff(tt.wantRequests, got.Requests, cmpQ); diff != "" {
				t.Errorf("requests (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLimits, got.Limits, cmpQ); diff != "" {
				t.Errorf("limits (-want +got)\n%s", diff)
			}
		})
	}
	if got, err := agentResources(daemon.AgentResources{}, 0); got != nil || err != nil {
		t.Errorf("no override: got %v, %v; want nil (inject's defaults)", got, err)
	}
	if _, err := agentResources(daemon.AgentResources{MemoryLimit: "lots"}, 0); err == nil {
		t.Error("a bad quantity from another client is not refused")
	}
}
