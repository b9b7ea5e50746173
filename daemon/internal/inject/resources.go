package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/errdefs"
)

// The agent container's default resources. Without requests and limits a
// namespace whose ResourceQuota covers CPU or memory refuses every pod of
// the changed template ("must specify limits.cpu ...").
//
//   - Memory: idle the agent holds 3-16 MiB; recording, it sets its Go memory
//     limit to the recording budget + 24 MiB (agent/run.go), and with a full
//     64 MiB ring its working set was measured at 88 MiB. The limit is the
//     budget + 64 MiB (128 MiB by default): 40 MiB above that, for what the
//     Go limit does not bound (goroutine stacks, the kernel's socket buffers
//     charged to the container) and for bursts the collector catches late.
//   - CPU: the agent runs one P (agent/server/run.go), so it seldom uses
//     more than one core, and a limit of one core throttles it only when
//     its threads in system calls and the collector add up beyond that.
//     The request stays small: it reserves nothing on the node. The agent
//     used 0.27 cores routing 5,000 requests/s on the bench's machine and
//     0.49 cores mirroring them (0.43 and more when the machine was busy);
//     held to 500m (the earlier default), the kernel throttled it in 3-25
//     of each run's CFS periods at that rate, stalling every caller it
//     carried, and in none held to one core (`make bench`, -agent-cpu).
const (
	DefaultCPURequest    = "10m"
	DefaultMemoryRequest = "32Mi"
	DefaultCPULimit      = agentspec.DefaultCPULimit
	// DefaultRecordBudget is the agent's recording budget when not given
	// (agent/run.go).
	DefaultRecordBudget = 64 << 20
	// agentMemoryHeadroom is what the agent's Go memory limit allows beyond
	// the recording budget (agent/run.go's memoryHeadroom).
	agentMemoryHeadroom = 24 << 20
	// memoryAboveBudget is the default memory limit's margin over the budget.
	memoryAboveBudget = 64 << 20
)

// DefaultResources returns the agent's requests and limits for a recording
// budget of budget bytes (0: the agent's default).
func DefaultResources(budget int64) corev1.ResourceRequirements {
	if budget <= 0 {
		budget = DefaultRecordBudget
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(DefaultCPURequest),
			corev1.ResourceMemory: resource.MustParse(DefaultMemoryRequest),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(DefaultCPULimit),
			corev1.ResourceMemory: *resource.NewQuantity(budget+memoryAboveBudget, resource.BinarySI),
		},
	}
}

// recordBudget reads --record-budget from the agent's recording flags; 0
// when absent or unreadable (the agent then refuses it itself).
func recordBudget(args []string) int64 {
	for i, a := range args {
		if a == "--record-budget" && i+1 < len(args) {
			if q, err := resource.ParseQuantity(args[i+1]); err == nil {
				return q.Value()
			}
		}
	}
	return 0
}

// agentResources returns the resources the agent container gets: opts'
// when given, checked against what the agent will use, else the defaults.
func agentResources(opts Options) (corev1.ResourceRequirements, error) {
	budget := recordBudget(opts.RecordArgs)
	if opts.Resources == nil {
		return DefaultResources(budget), nil
	}
	r := *opts.Resources.DeepCopy()
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			return r, errdefs.User("the agent's %s request %s is above its limit %s; lower the request or raise the limit",
				name, req.String(), lim.String())
		}
	}
	if lim, ok := r.Limits[corev1.ResourceMemory]; ok && !recordingOff(opts.RecordArgs) {
		if budget <= 0 {
			budget = DefaultRecordBudget
		}
		if need := budget + agentMemoryHeadroom; lim.Value() <= need {
			return r, errdefs.User("the agent's memory limit %s is too small for its recording budget of %s: the agent may use the budget + %s; "+
				"give it more than %s, or lower the recording budget", lim.String(), mib(budget), mib(agentMemoryHeadroom), mib(need))
		}
	}
	return r, nil
}

func recordingOff(args []string) bool {
	for _, a := range args {
		if a == "--no-record" {
			return true
		}
	}
	return false
}

func mib(n int64) string {
	return fmt.Sprintf("%dMi", n>>20)
}
