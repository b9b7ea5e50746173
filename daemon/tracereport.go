package daemon

import (
	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/netpol"
	"github.com/tetherkube/tether/internal/resolvconf"
)

// TraceStatus is a trace step's status.
type TraceStatus string

// Statuses, from best to worst.
const (
	TraceOK      TraceStatus = "ok"
	TraceSkipped TraceStatus = "skipped" // nothing to check at this step
	TraceWarn    TraceStatus = "warn"    // works, with something worth knowing
	TraceBroken  TraceStatus = "broken"
)

// TraceReport is a whole trace, the result of Trace; `tether trace -o json` prints it.
type TraceReport struct {
	Source TraceSource `json:"source"`
	Target TraceTarget `json:"target"`
	Steps  []TraceStep `json:"steps"`
	// FirstBroken names the first broken step; empty when the path is healthy.
	FirstBroken string `json:"firstBroken,omitempty"`
	// Conclusion is the final line: "path healthy" or what broke first.
	Conclusion     string  `json:"conclusion"`
	DurationMillis float64 `json:"durationMillis"`
}

// TraceSource is the pod the connection starts from.
type TraceSource struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Node      string `json:"node"`
	// PickedFrom is the workload the pod was picked from ("deploy/client").
	PickedFrom string `json:"pickedFrom,omitempty"`
}

// TraceStep is one stage of the path. Exactly one of the detail fields is set,
// matching Name (none for a skipped step).
type TraceStep struct {
	Name    string      `json:"name"`
	Status  TraceStatus `json:"status"`
	Summary string      `json:"summary"`
	// Details are the lines shown under the summary, for people.
	Details []string `json:"details,omitempty"`

	DNS     *TraceDNSResult     `json:"dns,omitempty"`
	Service *TraceServiceResult `json:"service,omitempty"`
	Policy  *TracePolicyResult  `json:"policy,omitempty"`
	Probe   *TraceProbeResult   `json:"probe,omitempty"`
}

// TraceDNSResult is the DNS step: every query the pod's resolver would send, in
// order, as sent from the pod.
type TraceDNSResult struct {
	Name       string            `json:"name"`
	ResolvConf resolvconf.Config `json:"resolvConf"`
	Queries    []TraceQuery      `json:"queries"`
	// Answered is the name that resolved, and Addresses what it resolved to.
	Answered  string   `json:"answered,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// TraceQuery is one query sent from the pod and its answer.
type TraceQuery struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Server  string            `json:"server"`
	Rcode   string            `json:"rcode,omitempty"`
	Answers []agent.DNSRecord `json:"answers,omitempty"`
	Error   string            `json:"error,omitempty"`
	Millis  float64           `json:"latencyMillis"`
}

// TraceServiceResult is the Service step (or, for a pod destination, the pod).
type TraceServiceResult struct {
	Namespace    string            `json:"namespace"`
	Name         string            `json:"name"`
	Type         string            `json:"type,omitempty"`
	ClusterIP    string            `json:"clusterIP,omitempty"`
	ExternalName string            `json:"externalName,omitempty"`
	Port         *TracePortMapping `json:"port,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	// SelectedPods counts the pods the selector matches.
	SelectedPods int             `json:"selectedPods"`
	Endpoints    []TraceEndpoint `json:"endpoints"`
}

// TracePortMapping is port -> targetPort -> the container port.
type TracePortMapping struct {
	Name        string `json:"name,omitempty"`
	Protocol    string `json:"protocol"`
	Port        int32  `json:"port"`
	TargetPort  string `json:"targetPort"`
	AppProtocol string `json:"appProtocol,omitempty"`
}

// TraceEndpoint is one address behind the Service.
type TraceEndpoint struct {
	Address     string `json:"address"`
	Port        int32  `json:"port"`
	Pod         string `json:"pod,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Node        string `json:"node,omitempty"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
	// Reason says why a not-ready endpoint is not ready.
	Reason string `json:"reason,omitempty"`
}

// TracePolicyResult is the NetworkPolicy step: the verdict for each destination.
type TracePolicyResult struct {
	Verdicts []TracePolicyVerdict `json:"verdicts"`
}

// TracePolicyVerdict is the decision for one destination.
type TracePolicyVerdict struct {
	Destination string `json:"destination"`
	Port        int32  `json:"port"`
	netpol.Decision
}

// TraceProbeResult is the live-probe step.
type TraceProbeResult struct {
	Probes []TraceProbe `json:"probes"`
}

// TraceProbe is one connection attempt from the source pod.
type TraceProbe struct {
	// What is the Service address or an endpoint ("service", "endpoint").
	What          string  `json:"what"`
	Address       string  `json:"address"`
	Pod           string  `json:"pod,omitempty"`
	Connected     bool    `json:"connected"`
	ConnectMillis float64 `json:"connectMillis"`
	Error         string  `json:"error,omitempty"`
	HTTPStatus    int     `json:"httpStatus,omitempty"`
	HTTPMillis    float64 `json:"httpMillis,omitempty"`
	HTTPError     string  `json:"httpError,omitempty"`
}

// TraceTarget is where the connection goes, as the user wrote it.
type TraceTarget struct {
	Input string `json:"input"`
	Kind  string `json:"kind"`
	// Host is the DNS name or address (KindName, KindIP).
	Host string `json:"host,omitempty"`
	// Namespace and Name name the Service or pod (KindService, KindPod).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Port is a number, or a Service port's name; empty when not given.
	Port string `json:"port,omitempty"`
	// URL targets: the scheme and the request's path.
	Scheme string `json:"scheme,omitempty"`
	Path   string `json:"path,omitempty"`
}

// HTTP reports whether the target asks for an HTTP probe by itself.
func (t TraceTarget) HTTP() bool { return t.Scheme == "http" }

func (t TraceTarget) String() string { return t.Input }
