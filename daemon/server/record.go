package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// Record puts the agent in front of a workload's Service port, recording
// without intercepting; the change is journaled like an intercept's and
// `tether rollback` removes it.
func (d *Daemon) Record(ctx context.Context, req daemon.RecordRequest, progress func(string)) (daemon.RecordInfo, error) {
	w, err := workload.Client{CS: d.cs}.Resolve(ctx, req.Namespace, req.Workload)
	if err != nil {
		return daemon.RecordInfo{}, err
	}
	// An earlier leave's watch would step the agents aside while this
	// recording starts: the agents record until rollback from now on.
	d.asides.stop(w.Namespace + "/" + w.String())
	if req.NoRestart {
		if req.Passive {
			return daemon.RecordInfo{}, errdefs.User("--passive and --no-restart: choose one (--no-restart's ephemeral agents record in the Service's path)")
		}
		return d.recordNoRestart(ctx, w, req, progress)
	}
	if err := d.permitted(ctx, access.Record, req.Namespace, accessObjects(w), "recording", userRole); err != nil {
		return daemon.RecordInfo{}, err
	}
	res, err := agentResources(req.AgentResources, int64(req.Budget))
	if err != nil {
		return daemon.RecordInfo{}, err
	}
	m := &intercept.Manager{CS: d.cs, Dialer: d.dialer, Log: d.log, Progress: progress, OnLink: d.agentProf.watch, Releases: d.releases}
	ic, err := m.Start(ctx, intercept.Request{
		Namespace: req.Namespace, Workload: w.String(), Resolved: w, ServicePort: req.ServicePort, AgentImage: req.AgentImage,
		RolloutTimeout: time.Duration(req.RolloutTimeout) * time.Second, RecordOnly: true, RecordArgs: req.RecordArgs(),
		AgentResources: res,
	})
	if err != nil {
		return daemon.RecordInfo{}, err
	}
	d.log.Info("recording", "workload", ic.Workload.Namespace+"/"+ic.Workload.String(), "noRedact", req.NoRedact, "passive", req.Passive)
	// The agents record until rollback (--record-idle 0, also when an
	// intercept had added them): they never step aside, nothing to watch;
	// unless they record from packets, when they step aside at once.
	if req.Passive {
		d.passiveAside(ctx, w, progress)
	}
	return daemon.RecordInfo{Workload: ic.Workload.String(), Namespace: ic.Workload.Namespace, Service: ic.Service,
		ServicePort: int(ic.ServicePort.Port), AgentPort: ic.AgentPort}, nil
}

// recordForMirror makes w's agents record from a copy of the pods'
// packets, as `record --passive` does, for intercept --mirror --passive
// (whose checks the caller ran first).
func (d *Daemon) recordForMirror(ctx context.Context, w journal.Workload, req daemon.InterceptRequest, progress func(string)) error {
	_, err := d.Record(ctx, daemon.RecordRequest{Namespace: req.Namespace, Workload: w.String(), ServicePort: req.ServicePort,
		AgentImage: req.AgentImage, RolloutTimeout: req.RolloutTimeout, AgentResources: req.AgentResources, Passive: true}, progress)
	return err
}

// recordNoRestart records through ephemeral agents of the running pods
// (intercept --no-restart's mode, without intercepting): the daemon holds
// it like an intercept, following the pods, until `tether leave` (or
// quit), which restores the Service and the pods' labels.
func (d *Daemon) recordNoRestart(ctx context.Context, w journal.Workload, req daemon.RecordRequest, progress func(string)) (daemon.RecordInfo, error) {
	if err := d.permitted(ctx, access.InterceptNoRestart, req.Namespace, accessObjects(w), "recording --no-restart", noRestartRole); err != nil {
		return daemon.RecordInfo{}, err
	}
	if req.AgentResources != (daemon.AgentResources{}) {
		return daemon.RecordInfo{}, errdefs.User("--no-restart adds the agent as an ephemeral container, which Kubernetes allows " +
			"no resources: drop --agent-cpu and --agent-memory, or record without --no-restart")
	}
	key := w.Namespace + "/" + w.String()
	d.mu.Lock()
	if _, ok := d.intercepts[key]; ok || d.starting[key] {
		d.mu.Unlock()
		return daemon.RecordInfo{}, errdefs.AlreadyExists("%s in namespace %s is intercepted or recorded by this daemon; `tether leave %s` first",
			w, w.Namespace, w)
	}
	d.starting[key] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.starting, key)
		d.mu.Unlock()
	}()
	m := &intercept.Manager{CS: d.cs, Dialer: d.dialer, Log: d.log, Progress: progress, Paths: d.paths, Releases: d.releases}
	ic, err := m.Start(ctx, intercept.Request{
		Namespace: req.Namespace, Workload: w.String(), Resolved: w, ServicePort: req.ServicePort, AgentImage: req.AgentImage,
		RolloutTimeout: time.Duration(req.RolloutTimeout) * time.Second, RecordOnly: true, RecordArgs: req.RecordArgs(),
		NoRestart: true, ID: randomHex(8), Owner: d.owner(),
	})
	if err != nil {
		return daemon.RecordInfo{}, err
	}
	d.mu.Lock()
	d.intercepts[key] = ic
	d.mu.Unlock()
	d.log.Info("recording (no restart)", "workload", key, "pods", ic.Pods())
	return daemon.RecordInfo{Workload: ic.Workload.String(), Namespace: ic.Workload.Namespace, Service: ic.Service,
		ServicePort: int(ic.ServicePort.Port), AgentPort: ic.AgentPort}, nil
}

// Requests reads the recorded exchanges from every agent of the workload,
// merged oldest first.
func (d *Daemon) Requests(ctx context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
	if err := req.Filter.Validate(); err != nil {
		return nil, errdefs.Mark(errdefs.ErrUser, err)
	}
	w, withAgent, err := d.workloadAgents(ctx, req.Namespace, req.Workload)
	if err != nil {
		return nil, err
	}

	var mu sync.Mutex
	var all []*recording.Exchange
	stats := make([]daemon.PodRecording, len(withAgent))
	var wg sync.WaitGroup
	for i, p := range withAgent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i].Pod = p.pod.Name
			link, err := d.agentLink(ctx, w.Namespace, p.pod.Name, p.port, p.token)
			if err != nil {
				stats[i].Error = err.Error()
				return
			}
			defer link.Close()
			var got []*recording.Exchange
			st, err := link.Agent().Exchanges(ctx, agent.ExchangesRequest{Filter: req.Filter, WithoutBodies: req.WithoutBodies, Limit: req.Limit},
				func(b []*recording.Exchange) error { got = append(got, b...); return nil })
			if err != nil {
				stats[i].Error = err.Error()
				return
			}
			stats[i].Stats = st
			mu.Lock()
			all = append(all, got...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	failed := 0
	for _, s := range stats {
		if s.Error != "" {
			failed++
		}
	}
	if failed == len(stats) {
		return stats, errors.New("no agent of " + w.String() + " could be read: " + stats[0].Error)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	if req.Limit > 0 && len(all) > req.Limit {
		all = all[len(all)-req.Limit:]
	}
	for _, e := range all {
		if err := emit(e); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// agentTarget is a pod's agent to read: its tunnel port and token.
type agentTarget struct {
	pod   corev1.Pod
	port  int
	token []byte
}

// workloadAgents finds the workload ref names and its running pods with an
// agent: the sidecar (ready; the workload's token), else the ephemeral
// agent of an intercept or recording --no-restart (its own token). No
// such pod is a user error.
func (d *Daemon) workloadAgents(ctx context.Context, namespace, ref string) (journal.Workload, []agentTarget, error) {
	wc := workload.Client{CS: d.cs}
	w, err := wc.Resolve(ctx, namespace, ref)
	if err != nil {
		return w, nil, err
	}
	if err := d.permitted(ctx, access.Requests, namespace, accessObjects(w), "reading recordings", userRole); err != nil {
		return w, nil, err
	}
	sel, err := wc.Selector(ctx, w)
	if err != nil {
		return w, nil, err
	}
	pods, err := d.cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return w, nil, fmt.Errorf("list the pods of %s: %w", w, err)
	}
	var out []agentTarget
	var sidecarToken []byte
	var unread []string // why an ephemeral agent's token could not be read
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		if runsAgent(*p) {
			if sidecarToken == nil {
				name, ok := inject.TokenSecret(&p.Spec)
				if !ok {
					return w, nil, fmt.Errorf("pod %s runs the agent without its token volume", p.Name)
				}
				secret, err := d.cs.CoreV1().Secrets(w.Namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return w, nil, fmt.Errorf("read the agent token of %s: %w", w, err)
				}
				sidecarToken = secret.Data[inject.TokenKey]
			}
			out = append(out, agentTarget{pod: *p, port: agent.DefaultTunnelPort, token: sidecarToken})
			continue
		}
		// One the kubelet still reports starting is read too: one that
		// truly is not up yet is a read error for its pod, said so.
		a, ok, err := inspect.InterceptAgent(ctx, d.cs, p, func(s string) { unread = append(unread, s) })
		if err != nil {
			return w, nil, err
		}
		if ok {
			out = append(out, agentTarget{pod: *p, port: a.Port, token: a.Token})
		}
	}
	if len(out) == 0 && len(unread) > 0 {
		return w, nil, errdefs.User("%s: %s (docs/intercept.md, the tether-no-restart Role)", w, unread[0])
	}
	if len(out) == 0 {
		return w, nil, errdefs.User("no pod of %s in namespace %s runs the tether agent; "+
			"`tether record %s --port PORT` (or an intercept) puts it in front of a port", w, w.Namespace, w)
	}
	return w, out, nil
}

func runsAgent(p corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == inject.AgentContainer && c.Ready {
			return true
		}
	}
	return false
}

// passiveAside steps aside the agents of w, which record from packets:
// the Service sends its callers straight to the app again. Should they
// not all step aside, the recording goes on in the Service's path, and
// progress says so.
func (d *Daemon) passiveAside(ctx context.Context, w journal.Workload, progress func(string)) {
	progress("pointing the Service back at the app: the agents record from a copy of the pods' packets")
	if _, done := d.tryAside(ctx, w); done {
		return
	}
	progress(fmt.Sprintf("the agents of %s did not all step aside; they record in the Service's path meanwhile (`tether logs` says why)", w))
	d.watchAside(w)
}
