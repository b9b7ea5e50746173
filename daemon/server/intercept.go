package server

import (
	"context"
	"fmt"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/access"

	"github.com/tetherkube/tether/internal/errdefs"
)

func info(ic *intercept.Intercept) daemon.InterceptInfo {
	return daemon.InterceptInfo{
		Name: ic.Workload.String(), Namespace: ic.Workload.Namespace, Service: ic.Service,
		ServicePort: int(ic.ServicePort.Port), AgentPort: ic.AgentPort, LocalPort: ic.LocalPort, Pods: ic.Pods(),
		Filter: ic.Spec.Filter, Mirror: ic.Spec.Mirror, Owner: ic.Spec.Owner,
		Paths: ic.Paths(), Mode: mode(ic),
	}
}

// mode says how the intercept's agents joined the pods.
func mode(ic *intercept.Intercept) string {
	if ic.NoRestart {
		return "no-restart"
	}
	return "sidecar"
}

// Intercept starts an intercept and keeps it until Leave or Quit.
func (d *Daemon) Intercept(ctx context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
	d.log.Info("intercept requested", "namespace", req.Namespace, "workload", req.Workload)
	path, err := agent.ParsePath(req.Path)
	if err != nil {
		return daemon.InterceptInfo{}, err
	}
	w, err := workload.Client{CS: d.cs}.Resolve(ctx, req.Namespace, req.Workload)
	if err != nil {
		return daemon.InterceptInfo{}, err
	}
	if req.Passive && (!req.Mirror || req.NoRestart) {
		return daemon.InterceptInfo{}, errdefs.User("--passive makes a mirror copy from the pods' packets: it needs --mirror, and not --no-restart " +
			"(ephemeral agents work in the Service's path)")
	}
	feature, what, role := access.Intercept, "an intercept", userRole
	if req.NoRestart {
		feature, what, role = access.InterceptNoRestart, "an intercept --no-restart", noRestartRole
		if req.AgentResources != (daemon.AgentResources{}) {
			return daemon.InterceptInfo{}, errdefs.User("--no-restart adds the agent as an ephemeral container, which Kubernetes allows " +
				"no resources: drop --agent-cpu and --agent-memory, or intercept without --no-restart")
		}
	}
	if err := d.permitted(ctx, feature, req.Namespace, accessObjects(w), what, role); err != nil {
		return daemon.InterceptInfo{}, err
	}
	res, err := agentResources(req.AgentResources, 0)
	if err != nil {
		return daemon.InterceptInfo{}, err
	}
	if _, err := httpfilter.Parse(req.Filter); err != nil {
		return daemon.InterceptInfo{}, errdefs.User("%v", err)
	}
	key := w.Namespace + "/" + w.String()
	d.mu.Lock()
	if ic, ok := d.intercepts[key]; ok {
		d.mu.Unlock()
		return daemon.InterceptInfo{}, errdefs.AlreadyExists("%s in namespace %s is already intercepted to localhost:%d; `tether leave %s` first",
			w, w.Namespace, ic.LocalPort, w)
	}
	if d.starting[key] {
		d.mu.Unlock()
		return daemon.InterceptInfo{}, errdefs.AlreadyExists("an intercept of %s in namespace %s is being started right now", w, w.Namespace)
	}
	d.starting[key] = true
	d.mu.Unlock()
	d.asides.stop(key)
	defer func() {
		d.mu.Lock()
		delete(d.starting, key)
		d.mu.Unlock()
	}()
	m := &intercept.Manager{CS: d.cs, Dialer: d.dialer, Log: d.log, Progress: progress, Paths: d.paths, OnLink: d.agentProf.watch, Kept: d.kept, Releases: d.releases}
	ireq := intercept.Request{
		Namespace: req.Namespace, Workload: w.String(), Resolved: w, ServicePort: req.ServicePort, LocalPort: req.LocalPort,
		AgentImage: req.AgentImage, RolloutTimeout: time.Duration(req.RolloutTimeout) * time.Second,
		AgentResources: res, LocalPortLater: req.LocalPortLater,
		Filter: req.Filter, Mirror: req.Mirror, ID: randomHex(8), Owner: d.owner(), Path: path, NoRestart: req.NoRestart,
		RecordArgs: agentIdleArgs(req.AgentIdle),
	}
	if req.Passive {
		// Everything the intercept would refuse is refused before the
		// recording's rollout changes the workload.
		if err := m.Check(ctx, ireq); err != nil {
			return daemon.InterceptInfo{}, err
		}
		if err := d.recordForMirror(ctx, w, req, progress); err != nil {
			return daemon.InterceptInfo{}, err
		}
		ireq.AgentResources, ireq.RecordArgs = nil, nil // the recording's agents took them
	}
	ic, err := m.Start(ctx, ireq)
	if err != nil {
		if req.Passive {
			err = fmt.Errorf("%w (the agents stay, recording from packets: `tether rollback %s -n %s` removes them)", err, w, w.Namespace)
		}
		return daemon.InterceptInfo{}, err
	}
	d.mu.Lock()
	d.intercepts[key] = ic
	d.mu.Unlock()
	d.log.Info("intercept started", "workload", key, "localPort", req.LocalPort, "pods", ic.Pods())
	return info(ic), nil
}

// Leave stops an intercept.
func (d *Daemon) Leave(ctx context.Context, namespace, name string) error {
	w, err := workload.Client{CS: d.cs}.Resolve(ctx, namespace, name)
	if err != nil {
		return err
	}
	key := w.Namespace + "/" + w.String()
	d.mu.Lock()
	ic, ok := d.intercepts[key]
	delete(d.intercepts, key)
	d.mu.Unlock()
	if !ok {
		return errdefs.NotFound("%s in namespace %s is not intercepted by this daemon (see `tether status`)", w, w.Namespace)
	}
	d.log.Info("leave", "workload", key)
	if err := ic.Leave(ctx); err != nil {
		return err
	}
	if !ic.NoRestart {
		d.watchAside(w)
	}
	return nil
}
