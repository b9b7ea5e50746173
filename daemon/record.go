package daemon

import (
	"fmt"
	"strings"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/recording"
)

// RecordRequest asks for an agent that records a workload's port without
// intercepting it.
type RecordRequest struct {
	Namespace      string   `json:"namespace"`
	Workload       string   `json:"workload"`
	ServicePort    string   `json:"servicePort"`
	AgentImage     string   `json:"agentImage"`
	RolloutTimeout int64    `json:"rolloutTimeoutSeconds,omitempty"`
	Redact         []string `json:"redact,omitempty"`
	NoRedact       bool     `json:"noRedact,omitempty"`
	BodyCap        int      `json:"bodyCap,omitempty"`
	Budget         int      `json:"budget,omitempty"`
	// AgentResources override the agent container's default requests and limits.
	AgentResources AgentResources `json:"agentResources,omitzero"`
	// NoRestart adds the agent to the running pods as an ephemeral
	// container: no pod restarts; the daemon follows the recording until
	// `tether leave` (docs/intercept.md).
	NoRestart bool `json:"noRestart,omitempty"`
	// Passive records from a copy of the pods' packets (the agent's
	// --record-passive, which needs NET_RAW): the agents step aside at
	// once, the Service sends callers straight to the app, and they pay
	// nothing for the recording.
	Passive bool `json:"passive,omitempty"`
}

// RecordInfo describes a recording agent in place.
type RecordInfo struct {
	Workload    string `json:"workload"`
	Namespace   string `json:"namespace"`
	Service     string `json:"service"`
	ServicePort int    `json:"servicePort"`
	AgentPort   int    `json:"agentPort"`
}

// RecordArgs are the agent flags for the request's recording options.
func (r RecordRequest) RecordArgs() []string {
	// What the user asked to record is recorded until they roll it back:
	// no pause when nothing intercepts (an intercept's agent pauses).
	args := []string{"--record-idle", "0"}
	if len(r.Redact) > 0 {
		args = append(args, "--redact", strings.Join(r.Redact, ","))
	}
	if r.NoRedact {
		args = append(args, "--no-redact")
	}
	if r.BodyCap > 0 {
		args = append(args, "--record-body-cap", fmt.Sprint(r.BodyCap))
	}
	if r.Budget > 0 {
		args = append(args, "--record-budget", fmt.Sprint(r.Budget))
	}
	if r.Passive {
		args = append(args, agentspec.PassiveRecordFlag)
	}
	return args
}

// RequestsRequest selects recorded exchanges of a workload's agents.
type RequestsRequest struct {
	Namespace     string
	Workload      string
	Filter        recording.Filter
	WithoutBodies bool
	// Limit keeps the newest N across all pods (0: all).
	Limit int
}

// PodRecording is one agent's recorder statistics.
type PodRecording struct {
	Pod   string               `json:"pod"`
	Stats agent.RecordingStats `json:"stats"`
	// Error says why this pod's agent could not be read.
	Error string `json:"error,omitempty"`
}
