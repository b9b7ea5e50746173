package daemon

import (
	"encoding/json"
	"fmt"

	"github.com/tetherkube/tether/daemon/internal/trace"
)

// TraceReport is the result of a trace; its JSON form is what
// `tether trace -o json` prints.
type TraceReport = trace.Report

// TraceStatus is a trace step's status.
type TraceStatus = trace.Status

// TraceStep is one step of a TraceReport.
type TraceStep = trace.Step

// Trace step statuses and names, for callers that read a TraceReport.
const (
	TraceOK      = trace.OK
	TraceWarn    = trace.Warn
	TraceBroken  = trace.Broken
	TraceSkipped = trace.Skipped
)

// TraceRequest names the source pod and the destination.
type TraceRequest struct {
	Namespace  string
	From, To   string
	AgentImage string
}

// TraceReportToJSON and TraceReportFromJSON carry a TraceReport on the wire.
func TraceReportToJSON(rep TraceReport) ([]byte, error) { return json.Marshal(rep) }

func TraceReportFromJSON(b []byte) (TraceReport, error) {
	var rep TraceReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("read the daemon's trace report: %w", err)
	}
	return rep, nil
}
