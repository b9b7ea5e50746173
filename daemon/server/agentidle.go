package server

import (
	"context"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/intercept"
)

// agentPodsTimeout bounds how long status waits for the agents of one
// workload to say whether they are idle.
const agentPodsTimeout = 2 * time.Second

// agentPods asks each agent of the workload (ref in namespace) whether
// anything intercepts it and whether it still records: over this daemon's
// intercept tunnel, or the tunnel it kept from one, when it holds one to
// the pod, else over a tunnel opened for the question. It returns nothing when the agents cannot be
// listed (no permission, no pod).
func (d *Daemon) agentPods(ctx context.Context, namespace, ref string, ic *intercept.Intercept) []daemon.AgentPod {
	ctx, cancel := context.WithTimeout(ctx, agentPodsTimeout)
	defer cancel()
	_, targets, err := d.workloadAgents(ctx, namespace, ref)
	if err != nil {
		d.log.Debug("status: agents of "+ref, "err", err)
		return nil
	}
	out := make([]daemon.AgentPod, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			out[i] = daemon.AgentPod{Pod: t.pod.Name}
			var l *agent.Link
			if ic != nil {
				l = ic.Link(t.pod.Name)
			}
			if l == nil {
				l = d.kept.Link(intercept.KeepKey(namespace, ref), t.pod.Name)
				out[i].TunnelKept = l != nil
			}
			if l == nil {
				own, err := d.agentLink(ctx, namespace, t.pod.Name, t.port, t.token)
				if err != nil {
					out[i].Error = err.Error()
					return
				}
				defer own.Close()
				l = own
			}
			info, err := l.Agent().Info(ctx)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].IdleSince, out[i].RecordingPaused, out[i].RecordIdle = info.IdleSince, info.RecordingPaused, info.RecordIdle
			out[i].Aside, out[i].Passive = info.Aside, info.Passive
		})
	}
	wg.Wait()
	return out
}
