package intercept

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// agentMemoryHeadroom is what the agent's Go memory limit allows beyond its
// recording budget (agent/run.go): a memory limit at or below budget +
// headroom gets the agent OOM-killed while it records.
const agentMemoryHeadroom = 24 << 20

// DefaultRecordBudget is the recording budget of an intercept's agent
// (agent/run.go), which --agent-memory's limit must exceed with headroom.
const DefaultRecordBudget = 64 << 20

// AddAgentFlags adds --agent-image and --rollout-timeout, which every
// command that puts the agent into a workload takes.
func AddAgentFlags(cmd *cobra.Command, image *string, rolloutTimeout *time.Duration) {
	cmd.Flags().StringVar(image, "agent-image", DefaultAgentImage(), "the agent's container image")
	cmd.Flags().DurationVar(rolloutTimeout, "rollout-timeout", 3*time.Minute, "how long to wait for every pod to run the agent")
}

// ValidateAgent checks --agent-image and --rollout-timeout without I/O.
func ValidateAgent(image string, rolloutTimeout time.Duration) error {
	if rolloutTimeout <= 0 {
		return errdefs.User("--rollout-timeout must be positive")
	}
	if image == "" {
		return errdefs.User("--agent-image must not be empty")
	}
	return nil
}

// AgentResourceFlags are --agent-cpu and --agent-memory, each
// REQUEST[:LIMIT] in Kubernetes quantities; "" keeps tether's defaults.
// One flag per resource, the way `kubectl set resources` pairs them, keeps
// a request next to its limit, where a request above its limit is seen.
type AgentResourceFlags struct {
	CPU, Memory string
}

// AddFlags adds --agent-cpu and --agent-memory to cmd.
func (f *AgentResourceFlags) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.CPU, "agent-cpu", "",
		"REQUEST[:LIMIT]: the agent container's CPU, e.g. 50m:1 (default 10m:1; :LIMIT sets the limit alone)")
	cmd.Flags().StringVar(&f.Memory, "agent-memory", "",
		"REQUEST[:LIMIT]: the agent container's memory, e.g. 64Mi:256Mi (default 32Mi:<recording budget + 64Mi>; :LIMIT sets the limit alone)")
}

// Resources checks the flags without I/O and returns them for the daemon.
// budget is the agent's recording budget in bytes: a memory limit must
// leave the agent more than budget + 24Mi; budgetFlag, when not "", is the
// flag that lowers it.
func (f AgentResourceFlags) Resources(budget int64, budgetFlag string) (daemon.AgentResources, error) {
	var r daemon.AgentResources
	var err error
	if r.CPURequest, r.CPULimit, err = requestLimit("--agent-cpu", f.CPU, "250m:1"); err != nil {
		return r, err
	}
	if r.MemoryRequest, r.MemoryLimit, err = requestLimit("--agent-memory", f.Memory, "64Mi:256Mi"); err != nil {
		return r, err
	}
	if r.MemoryLimit != "" {
		lim := resource.MustParse(r.MemoryLimit)
		if need := budget + agentMemoryHeadroom; lim.Value() <= need {
			lower := ""
			if budgetFlag != "" {
				lower = ", or lower " + budgetFlag
			}
			return r, errdefs.User("--agent-memory %s: the limit %s leaves the agent too little for its recording budget of %dMi "+
				"(it may use the budget + 24Mi): give a limit above %dMi%s", f.Memory, r.MemoryLimit, budget>>20, need>>20, lower)
		}
	}
	return r, nil
}

// requestLimit splits REQUEST[:LIMIT] and checks both are quantities, not
// negative, and the request at most the limit.
func requestLimit(flag, v, example string) (request, limit string, err error) {
	if v == "" {
		return "", "", nil
	}
	request, limit, _ = strings.Cut(v, ":")
	if request == "" && limit == "" {
		return "", "", errdefs.User("%s %q: write REQUEST[:LIMIT], e.g. %s %s", flag, v, flag, example)
	}
	var q [2]resource.Quantity
	for i, s := range []string{request, limit} {
		if s == "" {
			continue
		}
		if q[i], err = resource.ParseQuantity(s); err != nil || q[i].Sign() < 0 {
			return "", "", errdefs.User("%s %q: %q is not a Kubernetes quantity; write REQUEST[:LIMIT], e.g. %s %s", flag, v, s, flag, example)
		}
	}
	if request != "" && limit != "" && q[0].Cmp(q[1]) > 0 {
		return "", "", errdefs.User("%s %s: the request %s is above the limit %s; lower the request or raise the limit", flag, v, request, limit)
	}
	return request, limit, nil
}
