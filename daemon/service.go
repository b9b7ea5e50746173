package daemon

import (
	"context"
	"strings"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// Service is the daemon's API.
type Service interface {
	// Status reports the cluster connection and the running intercepts.
	Status(ctx context.Context) (Status, error)
	// Intercept starts an intercept, calling progress with what it waits for.
	Intercept(ctx context.Context, req InterceptRequest, progress func(string)) (InterceptInfo, error)
	// Leave stops the intercept named name ("deployment/orders") in namespace.
	Leave(ctx context.Context, namespace, name string) error
	// Rollback restores what tether changed, from the journal in the cluster.
	Rollback(ctx context.Context, req RollbackRequest) ([]RollbackResult, error)
	// Quit ends every intercept and stops the daemon.
	Quit(ctx context.Context) error
	// Capture streams the packets of a pod's network namespace to emit, in
	// the batches the agent sends (agent.EachPacket takes them one by one),
	// through an inspection agent added as an ephemeral container.
	Capture(ctx context.Context, req CaptureRequest, progress func(string), emit func([]agent.CapturedPacket) error) (agent.CaptureStats, error)
	// Trace explains the path from a pod to a destination, step by step,
	// probing from the pod through an inspection agent.
	Trace(ctx context.Context, req TraceRequest, progress func(string)) (TraceReport, error)
	// Record puts the agent in front of a workload's port to record it.
	Record(ctx context.Context, req RecordRequest, progress func(string)) (RecordInfo, error)
	// Requests calls emit with the exchanges the workload's agents recorded.
	Requests(ctx context.Context, req RequestsRequest, emit func(*recording.Exchange) error) ([]PodRecording, error)
	// Replay sends recorded exchanges again and calls emit with each result.
	Replay(ctx context.Context, req ReplayRequest, emit func(replay.Result) error) (replay.Summary, error)
	// Env returns a container's environment as its process sees it, each
	// variable with its source, and its configuration files when asked.
	Env(ctx context.Context, req EnvRequest, progress func(string)) (EnvResult, error)
	// Run lends a pod's network to a local process: it calls ready once
	// the run can carry connections (DialRun, the proxies), then holds the
	// run until ctx ends (nil) or the agent's link dies (an error).
	Run(ctx context.Context, req RunRequest, progress func(string), ready func(RunInfo)) error
	// SessionStart snapshots, in the cluster, the objects of a namespace a
	// developer may change while debugging (docs/session.md).
	SessionStart(ctx context.Context, req SessionStartRequest) (SessionInfo, error)
	// SessionDiff says what changed in the namespace since its session began.
	SessionDiff(ctx context.Context, namespace string) (SessionDiff, error)
	// SessionRollback restores the namespace's snapshot, calling progress
	// with each step and what it waits for.
	SessionRollback(ctx context.Context, req SessionRollbackRequest, progress func(string)) (SessionRollbackResult, error)
	// SessionEnd keeps the changes and drops the namespace's snapshot.
	SessionEnd(ctx context.Context, namespace string) (SessionInfo, error)
	// SessionLog appends req.Append (when set) to the session's log, kept
	// in the cluster with it, and returns the log.
	SessionLog(ctx context.Context, req SessionLogRequest) (SessionLog, error)
}

// CaptureRequest names the pod and what to capture.
type CaptureRequest struct {
	Namespace, Pod, Container string
	Interface, Filter         string
	Snaplen                   int
	Count                     uint64
	Duration                  time.Duration
	AgentImage                string
}

// Status is the daemon's state.
type Status struct {
	Context       string          `json:"context"`
	Server        string          `json:"server"`
	ServerVersion string          `json:"serverVersion"`
	DaemonVersion string          `json:"daemonVersion"`
	PID           int             `json:"pid"`
	Intercepts    []InterceptInfo `json:"intercepts"`
	// Agents are the workloads tether's agent sits in, with how it records.
	Agents []AgentInfo `json:"agents"`
	// Sessions are the sessions in the namespaces the user may list
	// Secrets in.
	Sessions []SessionInfo `json:"sessions,omitempty"`
}

// AgentInfo is a workload with tether's agent.
type AgentInfo struct {
	Workload     string   `json:"workload"`
	Namespace    string   `json:"namespace"`
	Recording    bool     `json:"recording"`
	RedactionOff bool     `json:"redactionOff"`
	Redacted     []string `json:"redacted,omitempty"`
	// NoRestartUnheld: an intercept or recording --no-restart's journal
	// that this daemon does not hold (another tether's, or one whose
	// daemon stopped): the Service selects only the pods marked then.
	NoRestartUnheld bool `json:"noRestartUnheld,omitempty"`
	// Pods are the workload's agents as each reports itself.
	Pods []AgentPod `json:"pods,omitempty"`
}

// AgentPod is one pod's agent: whether anything intercepts it, and
// whether it still records.
type AgentPod struct {
	Pod string `json:"pod"`
	// IdleSince is since when nothing has intercepted it (its start, if
	// nothing ever did); zero while something does.
	IdleSince time.Time `json:"idleSince,omitzero"`
	// RecordingPaused: idle for RecordIdle or longer, it forwards without
	// recording until the next intercept. RecordIdle 0: it never pauses.
	RecordingPaused bool          `json:"recordingPaused,omitempty"`
	RecordIdle      time.Duration `json:"recordIdle,omitempty"`
	// Error says why the agent could not be asked.
	Error string `json:"error,omitempty"`
	// TunnelKept: this daemon keeps a tunnel to the agent from an
	// intercept that ended, for the next one.
	TunnelKept bool `json:"tunnelKept,omitempty"`
	// Aside: the agent stepped aside after its idle time; the Service
	// sends its callers to the app until the next intercept.
	Aside bool `json:"aside,omitempty"`
	// Passive: the agent records from a copy of the pod's packets
	// (record --passive), with what it counted.
	Passive *agent.PassiveStats `json:"passive,omitempty"`
}

// InterceptRequest asks for an intercept.
type InterceptRequest struct {
	Namespace      string `json:"namespace"`
	Workload       string `json:"workload"`
	ServicePort    string `json:"servicePort"`
	LocalPort      int    `json:"localPort"`
	AgentImage     string `json:"agentImage"`
	RolloutTimeout int64  `json:"rolloutTimeoutSeconds,omitempty"`
	// AgentResources override the agent container's default requests and limits.
	AgentResources AgentResources `json:"agentResources,omitzero"`
	// LocalPortLater: the process listening on LocalPort starts once the
	// intercept is up (intercept -- CMD); nothing is checked there first.
	LocalPortLater bool `json:"localPortLater,omitempty"`
	// Filter selects the requests this intercept takes (zero: all of the
	// port's traffic); with Mirror the app answers them and this machine
	// gets copies.
	Filter httpfilter.Spec `json:"filter,omitzero"`
	Mirror bool            `json:"mirror,omitempty"`
	// Path is how the tunnels carry the connections: auto (empty),
	// direct or port-forward (agent.Path).
	Path string `json:"path,omitempty"`
	// NoRestart adds the agent to the running pods as an ephemeral
	// container: no pod restarts (docs/intercept.md).
	NoRestart bool `json:"noRestart,omitempty"`
	// AgentIdle is how long a new sidecar agent, once nothing intercepts
	// it, keeps recording and stays in the Service's path; 0: the agent's
	// default (30m).
	AgentIdle time.Duration `json:"agentIdle,omitempty"`
	// Passive, with Mirror, first makes the agents record from a copy of
	// the pods' packets (RecordRequest.Passive): the mirror copies from
	// them and the Service stays at the app.
	Passive bool `json:"passive,omitempty"`
}

// AgentResources are the agent container's requests and limits as
// Kubernetes quantities ("64Mi", "250m"); "" keeps tether's default for
// that value (docs/intercept.md, "The agent's resources").
type AgentResources struct {
	CPURequest    string `json:"cpuRequest,omitempty"`
	CPULimit      string `json:"cpuLimit,omitempty"`
	MemoryRequest string `json:"memoryRequest,omitempty"`
	MemoryLimit   string `json:"memoryLimit,omitempty"`
}

// InterceptInfo describes a running intercept.
type InterceptInfo struct {
	Name        string   `json:"name"`
	Namespace   string   `json:"namespace"`
	Service     string   `json:"service"`
	ServicePort int      `json:"servicePort"`
	AgentPort   int      `json:"agentPort"`
	LocalPort   int      `json:"localPort"`
	Pods        []string `json:"pods"`
	// Filter is the requests this intercept takes (zero: all traffic).
	Filter httpfilter.Spec `json:"filter,omitzero"`
	Mirror bool            `json:"mirror,omitempty"`
	// Owner is who this daemon intercepts as, shown to others.
	Owner string `json:"owner"`
	// PortIntercepts are everyone's intercepts of the port (this one's
	// too), as one pod's agent reports them (status only).
	PortIntercepts []PortIntercept `json:"portIntercepts,omitempty"`
	// ToApp, NotHTTP and TLS count, on that pod while the port is routed
	// request by request, the requests no filter selected and the
	// connections that were not cleartext HTTP (of them TLS), which went
	// to the app.
	ToApp   uint64 `json:"toApp,omitempty"`
	NotHTTP uint64 `json:"notHTTP,omitempty"`
	TLS     uint64 `json:"tls,omitempty"`
	// Paths says, by pod, which path its tunnel takes now: direct or
	// port-forward.
	Paths map[string]string `json:"paths"`
	// Mode is how the agents joined the pods: "sidecar" (the pod
	// template; every pod restarted) or "no-restart" (ephemeral
	// containers, the pods marked).
	Mode string `json:"mode,omitempty"`
}

// PodsAndPaths lists the pods with the path of each one's tunnel, for
// people: "orders-1 (direct), orders-2 (port-forward)".
func (i InterceptInfo) PodsAndPaths() string {
	out := make([]string, len(i.Pods))
	for n, p := range i.Pods {
		out[n] = p
		if path := i.Paths[p]; path != "" {
			out[n] += " (" + path + ")"
		}
	}
	return strings.Join(out, ", ")
}

// PortIntercept is one intercept of a port, whoever's.
type PortIntercept struct {
	Owner  string          `json:"owner"`
	Filter httpfilter.Spec `json:"filter,omitzero"`
	Mirror bool            `json:"mirror,omitempty"`
	Since  time.Time       `json:"since"`
	// Requests routed to it (copies delivered, for a mirror); Dropped
	// mirror copies not delivered, Shed those of them the agent did not
	// make because it ran near its CPU limit. Counted by the agent of Pod.
	Requests uint64 `json:"requests"`
	Dropped  uint64 `json:"dropped,omitempty"`
	Shed     uint64 `json:"shed,omitempty"`
	Pod      string `json:"pod"`
}

// RollbackRequest names what to roll back.
type RollbackRequest struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload,omitempty"`
	All       bool   `json:"all,omitempty"`
	Force     bool   `json:"force,omitempty"`
}

// RollbackResult is one workload's rollback.
type RollbackResult struct {
	Workload  string         `json:"workload"`
	Namespace string         `json:"namespace"`
	Steps     []RollbackStep `json:"steps"`
	Error     string         `json:"error,omitempty"`
}

// RollbackStep is one object restored or removed.
type RollbackStep struct {
	Object string `json:"object"`
	// Action is restored, unchanged, deleted, absent, refused or kept.
	Action string `json:"action"`
	// Reason says why, for refused and kept steps.
	Reason string `json:"reason,omitempty"`
}
