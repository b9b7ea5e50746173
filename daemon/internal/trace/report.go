package trace

import "github.com/tetherkube/tether/daemon"

// The report's types are the daemon API's (daemon/tracereport.go); these
// names keep this package's code short.
type (
	Report        = daemon.TraceReport
	Status        = daemon.TraceStatus
	Source        = daemon.TraceSource
	Target        = daemon.TraceTarget
	Step          = daemon.TraceStep
	DNSResult     = daemon.TraceDNSResult
	Query         = daemon.TraceQuery
	ServiceResult = daemon.TraceServiceResult
	PortMapping   = daemon.TracePortMapping
	Endpoint      = daemon.TraceEndpoint
	PolicyResult  = daemon.TracePolicyResult
	PolicyVerdict = daemon.TracePolicyVerdict
	ProbeResult   = daemon.TraceProbeResult
	Probe         = daemon.TraceProbe
)

// Statuses, from best to worst.
const (
	OK      = daemon.TraceOK
	Skipped = daemon.TraceSkipped
	Warn    = daemon.TraceWarn
	Broken  = daemon.TraceBroken
)

// Step names, in the order they run.
const (
	StepSource  = "source"
	StepDNS     = "dns"
	StepService = "service"
	StepPolicy  = "policy"
	StepProbe   = "probe"
)
