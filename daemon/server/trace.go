package server

import (
	"context"
	"fmt"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/trace"
	"github.com/tetherkube/tether/internal/access"
)

// Trace explains the path from a pod to a destination, probing from the
// pod through an inspection agent that needs no capability.
func (d *Daemon) Trace(ctx context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error) {
	target, err := trace.ParseTarget(req.To, req.Namespace)
	if err != nil {
		return daemon.TraceReport{}, err
	}
	if err := d.permitted(ctx, access.Inspect, req.Namespace, access.Objects{}, "trace", inspectRole); err != nil {
		return daemon.TraceReport{}, err
	}
	src, picked, err := trace.SourcePod(ctx, d.cs, req.Namespace, req.From)
	if err != nil {
		return daemon.TraceReport{}, err
	}
	if picked != "" {
		progress(fmt.Sprintf("tracing from pod %s, a ready pod of %s", src.Name, picked))
	}
	link, err := d.inspectAgent(ctx, inspect.Request{Namespace: src.Namespace, Pod: src.Name, AgentImage: req.AgentImage}, progress)
	if err != nil {
		return daemon.TraceReport{}, err
	}
	defer link.Close()
	d.log.Info("trace", "from", src.Namespace+"/"+src.Name, "to", req.To)
	tr := &trace.Tracer{CS: d.cs, Prober: link.Agent(), Progress: progress}
	return tr.Run(ctx, src, picked, target)
}
