package daemon

import (
	"context"
	"fmt"

	"github.com/tetherkube/tether/daemon/internal/inspect"
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

// Trace explains the path from a pod to a destination, probing from the
// pod through an inspection agent that needs no capability.
func (d *Daemon) Trace(ctx context.Context, req TraceRequest, progress func(string)) (TraceReport, error) {
	target, err := trace.ParseTarget(req.To, req.Namespace)
	if err != nil {
		return TraceReport{}, err
	}
	src, picked, err := trace.SourcePod(ctx, d.cs, req.Namespace, req.From)
	if err != nil {
		return TraceReport{}, err
	}
	if picked != "" {
		progress(fmt.Sprintf("tracing from pod %s, a ready pod of %s", src.Name, picked))
	}
	client, done, err := d.inspectAgent(ctx, inspect.Request{Namespace: src.Namespace, Pod: src.Name, AgentImage: req.AgentImage}, progress)
	if err != nil {
		return TraceReport{}, err
	}
	defer done()
	d.log.Info("trace", "from", src.Namespace+"/"+src.Name, "to", req.To)
	tr := &trace.Tracer{CS: d.cs, Prober: client, Progress: progress}
	return tr.Run(ctx, src, picked, target)
}
