package trace

import (
	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/netpol"
	"github.com/tetherkube/tether/internal/resolvconf"
)

// Status of a step.
type Status string

// Statuses, from best to worst.
const (
	OK      Status = "ok"
	Skipped Status = "skipped" // nothing to check at this step
	Warn    Status = "warn"    // works, with something worth knowing
	Broken  Status = "broken"
)

// Step names, in the order they run.
const (
	StepSource  = "source"
	StepDNS     = "dns"
	StepService = "service"
	StepPolicy  = "policy"
	StepProbe   = "probe"
)

// Report is a whole trace; `tether trace -o json` prints it.
type Report struct {
	Source Source `json:"source"`
	Target Target `json:"target"`
	Steps  []Step `json:"steps"`
	// FirstBroken names the first broken step; empty when the path is healthy.
	FirstBroken string `json:"firstBroken,omitempty"`
	// Conclusion is the final line: "path healthy" or what broke first.
	Conclusion     string  `json:"conclusion"`
	DurationMillis float64 `json:"durationMillis"`
}

// Source is the pod the connection starts from.
type Source struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Node      string `json:"node"`
	// PickedFrom is the workload the pod was picked from ("deploy/client").
	PickedFrom string `json:"pickedFrom,omitempty"`
}

// Step is one stage of the path. Exactly one of the detail fields is set,
// matching Name (none for a skipped step).
type Step struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Summary string `json:"summary"`
	// Details are the lines shown under the summary, for people.
	Details []string `json:"details,omitempty"`

	DNS     *DNSResult     `json:"dns,omitempty"`
	Service *ServiceResult `json:"service,omitempty"`
	Policy  *PolicyResult  `json:"policy,omitempty"`
	Probe   *ProbeResult   `json:"probe,omitempty"`
}

// DNSResult is the DNS step: every query the pod's resolver would send, in
// order, as sent from the pod.
type DNSResult struct {
	Name       string            `json:"name"`
	ResolvConf resolvconf.Config `json:"resolvConf"`
	Queries    []Query           `json:"queries"`
	// Answered is the name that resolved, and Addresses what it resolved to.
	Answered  string   `json:"answered,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// Query is one query sent from the pod and its answer.
type Query struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Server  string            `json:"server"`
	Rcode   string            `json:"rcode,omitempty"`
	Answers []agent.DNSRecord `json:"answers,omitempty"`
	Error   string            `json:"error,omitempty"`
	Millis  float64           `json:"latencyMillis"`
}

// ServiceResult is the Service step (or, for a pod destination, the pod).
type ServiceResult struct {
	Namespace    string            `json:"namespace"`
	Name         string            `json:"name"`
	Type         string            `json:"type,omitempty"`
	ClusterIP    string            `json:"clusterIP,omitempty"`
	ExternalName string            `json:"externalName,omitempty"`
	Port         *PortMapping      `json:"port,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	// SelectedPods counts the pods the selector matches.
	SelectedPods int        `json:"selectedPods"`
	Endpoints    []Endpoint `json:"endpoints"`
}

// PortMapping is port -> targetPort -> the container port.
type PortMapping struct {
	Name        string `json:"name,omitempty"`
	Protocol    string `json:"protocol"`
	Port        int32  `json:"port"`
	TargetPort  string `json:"targetPort"`
	AppProtocol string `json:"appProtocol,omitempty"`
}

// Endpoint is one address behind the Service.
type Endpoint struct {
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

// PolicyResult is the NetworkPolicy step: the verdict for each destination.
type PolicyResult struct {
	Verdicts []PolicyVerdict `json:"verdicts"`
}

// PolicyVerdict is the decision for one destination.
type PolicyVerdict struct {
	Destination string `json:"destination"`
	Port        int32  `json:"port"`
	netpol.Decision
}

// ProbeResult is the live-probe step.
type ProbeResult struct {
	Probes []Probe `json:"probes"`
}

// Probe is one connection attempt from the source pod.
type Probe struct {
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
