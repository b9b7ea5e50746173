package intercept

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
)

// An intercept --no-restart changes no pod template: the agent joins each
// running, ready pod as an ephemeral container in front of the app's port
// (port AgentPort of the pod, the same in every pod); a pod whose agent
// answers over its tunnel is marked with MarkLabel; and the Service
// selects only marked pods, on the agent's port. A pod without a working
// agent is never sent the Service's traffic. Every change is journaled
// first (the Service's selector and ports, each mark), and leave and
// rollback undo them (rollback.Restore).

// MarkLabel marks a pod whose agent answers an intercept --no-restart; its
// value is the intercept's ID.
const MarkLabel = "tether.dev/intercept"

// ErrNoEphemeral means the cluster does not serve pods/ephemeralcontainers.
var ErrNoEphemeral = errdefs.New(errdefs.ErrUser, "NO_EPHEMERAL_CONTAINERS",
	"the cluster does not support ephemeral containers")

// noRestartPlan is what an intercept --no-restart does to the cluster,
// decided before anything changes.
type noRestartPlan struct {
	w         journal.Workload
	tmpl      *corev1.PodTemplateSpec
	svc       *corev1.Service
	port      corev1.ServicePort // the intercepted Service port, as found
	appPort   int
	agentPort int
	mark      string
	pods      []*corev1.Pod // the ready pods, each to get an agent
	// selector and ports are the Service's, as tether sets them.
	selector map[string]string
	ports    []corev1.ServicePort
}

// planNoRestart checks the request and decides the agent port and the
// Service's new selector and ports; it changes nothing.
func (m *Manager) planNoRestart(ctx context.Context, req Request) (*noRestartPlan, error) {
	if req.RolloutTimeout == 0 {
		req.RolloutTimeout = 3 * time.Minute
	}
	if req.ID == "" {
		return nil, errors.New("intercept --no-restart needs an ID to mark its pods with")
	}
	ref, w, err := m.checkRequest(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	wc := workload.Client{CS: m.CS}
	// What does not depend on the Service is read meanwhile (each a
	// round trip to the API server); a refusal is still the first in the
	// order written.
	var (
		wg                       sync.WaitGroup
		journalErr, ephErr, lErr error
		list                     *corev1.PodList
	)
	wg.Go(func() {
		if e, err := (journal.Store{CS: m.CS}).Load(ctx, w); err != nil {
			journalErr = err
		} else if e != nil && e.NoRestart {
			journalErr = noRestartJournal(w)
		} else if e != nil {
			journalErr = errdefs.FailedCheck("%s has a journal of an earlier change by tether (a rollback left unfinished): "+
				"run `tether rollback %s` first", w, w)
		}
	})
	wg.Go(func() { ephErr = ephemeralSupported(m.CS) })
	wg.Go(func() {
		sel, err := wc.Selector(ctx, w)
		if err != nil {
			lErr = err
			return
		}
		if list, err = m.CS.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()}); err != nil {
			lErr = fmt.Errorf("list the pods of %s: %w", w, err)
		}
	})
	defer wg.Wait()
	tmpl, err := wc.Template(ctx, w)
	if err != nil {
		return nil, err
	}
	svc, err := m.service(ctx, w, tmpl, ref)
	if err != nil {
		return nil, err
	}
	// Build finds the app's port behind the Service port (and refuses what
	// an intercept cannot take); its template is not applied.
	plan, err := inject.Build(tmpl, svc, ref, inject.Options{AgentImage: req.AgentImage, SecretName: w.TokenSecretName()})
	if err != nil {
		return nil, err
	}
	if plan.Existing {
		return nil, errdefs.User("%s already runs tether's sidecar agent (an intercept without --no-restart added it): intercept without "+
			"--no-restart, which uses it at once, or `tether rollback %s` first", w, w)
	}
	if err := m.checkPlan(ctx, req, w, svc, plan); err != nil {
		return nil, err
	}
	wg.Wait()
	for _, err := range []error{journalErr, ephErr, lErr} {
		if err != nil {
			return nil, err
		}
	}
	var pods []*corev1.Pod
	for i := range list.Items {
		if p := &list.Items[i]; podReady(p) && ownedBy(p, w) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, errdefs.User("%s has no ready pod: --no-restart adds the agent to running pods only; start the workload "+
			"(or intercept without --no-restart)", w)
	}
	agentPort, err := commonPort(pods, int(plan.AppPort))
	if err != nil {
		return nil, err
	}
	np := &noRestartPlan{w: w, tmpl: tmpl, svc: svc, port: plan.ServicePort, appPort: int(plan.AppPort), agentPort: agentPort,
		mark: req.ID, pods: pods}
	np.selector = maps.Clone(svc.Spec.Selector)
	np.selector[MarkLabel] = req.ID
	np.ports = retargetPorts(svc.Spec.Ports, plan.ServicePort, agentPort)
	return np, nil
}

// entry is the journal an intercept --no-restart begins with: besides the
// template (for reference), the Service's selector and ports and the mark
// of every planned pod as they are now, all journaled at once before any
// changes (rather than one write before each change, on the way to the
// first intercept). Rollback finds a Service or a label tether had not
// changed yet unchanged, and leaves it.
func (np *noRestartPlan) entry() *journal.Entry {
	e := &journal.Entry{Workload: np.w, Template: *np.tmpl, NoRestart: true, CreatedAt: time.Now().UTC(), By: "tether " + buildinfo.Get().Version,
		Services: map[string]journal.ServiceEntry{np.svc.Name: np.serviceEntry()}, Marks: map[string]journal.Mark{}}
	for _, p := range np.pods {
		e.Marks[p.Name] = np.markOf(p)
	}
	return e
}

// serviceEntry journals the Service as found, and recognises it as tether
// sets it.
func (np *noRestartPlan) serviceEntry() journal.ServiceEntry {
	return journal.ServiceEntry{Ports: np.svc.Spec.Ports, Selector: np.svc.Spec.Selector,
		AppliedPortsHash: journal.Hash(np.ports), AppliedSelectorHash: journal.Hash(np.selector)}
}

// markOf journals pod p's label as it is, and the mark tether sets.
func (np *noRestartPlan) markOf(p *corev1.Pod) journal.Mark {
	m := journal.Mark{UID: p.UID, Label: MarkLabel, Value: np.mark}
	if v, ok := p.Labels[MarkLabel]; ok {
		m.Previous = &v
	}
	return m
}

// noRestartJournal is the refusal of a second intercept of a workload an
// intercept --no-restart holds: its journal is there.
func noRestartJournal(w journal.Workload) error {
	return errdefs.FailedCheck("%s is intercepted with --no-restart by another tether, or was by one whose daemon stopped "+
		"before `tether leave` (its journal says so): a workload takes one --no-restart intercept at a time. If nobody intercepts it, "+
		"`tether rollback %s` restores its Service and pods' labels", w, w)
}

// refuseNoRestartJournal refuses a sidecar intercept of a workload an
// intercept --no-restart holds (its Service selects only marked pods), or
// one a sidecar intercept stopped during its pinned rollout (pin.go).
func refuseNoRestartJournal(ctx context.Context, cs kubernetes.Interface, w journal.Workload) error {
	_, err := readJournal(ctx, cs, w)
	return err
}

// readJournal is refuseNoRestartJournal that also says whether w had a
// journal.
func readJournal(ctx context.Context, cs kubernetes.Interface, w journal.Workload) (found bool, err error) {
	e, err := journal.Store{CS: cs}.Load(ctx, w)
	found = e != nil
	switch {
	case err != nil || e == nil:
		return found, err
	case e.NoRestart:
		return found, noRestartJournal(w)
	case e.Pin != nil && e.Pin.Releasing:
		return found, waitPinReleased(ctx, cs, w, e.Pin.Service)
	case e.Pin != nil:
		return found, pinJournal(w, e.Pin.Service)
	}
	return found, nil
}

// pinReleaseWait bounds how long an intercept waits for another's release
// of its pinned rollout (journal.Pin.Releasing: its daemon sets the
// selector back once the old pods are going, well within a second here).
var pinReleaseWait = 15 * time.Second // a var for tests

// errPinReleased: the journal held a pin being released, and no longer
// does; what was read beside it is stale, so the caller reads again.
var errPinReleased = errors.New("other intercepts of the workload kept holding its Service while this one read it: run the command again")

// waitPinReleased waits for w's journal to hold no pin, and returns
// errPinReleased then; after pinReleaseWait it refuses as for a pin left
// by a daemon that stopped.
func waitPinReleased(ctx context.Context, cs kubernetes.Interface, w journal.Workload, svc string) error {
	deadline := time.Now().Add(pinReleaseWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		e, err := journal.Store{CS: cs}.Load(ctx, w)
		if err != nil {
			return err
		}
		if e == nil || e.Pin == nil {
			return errPinReleased
		}
	}
	return pinJournal(w, svc)
}

// retargetPorts returns ports with the intercepted port's targetPort set
// to the agent's port.
func retargetPorts(ports []corev1.ServicePort, sp corev1.ServicePort, agentPort int) []corev1.ServicePort {
	out := make([]corev1.ServicePort, len(ports))
	for i, p := range ports {
		p := *p.DeepCopy()
		if p.Port == sp.Port && p.Protocol == sp.Protocol && p.Name == sp.Name {
			p.TargetPort = intstr.FromInt32(int32(agentPort))
		}
		out[i] = p
	}
	return out
}

// commonPort returns the lowest port from inject.FirstAgentPort an agent
// may listen on in every pod (the Service has one targetPort for them
// all): one an intercept agent of the pod already forwards to appPort, or
// one no container declares or an agent was given.
func commonPort(pods []*corev1.Pod, appPort int) (int, error) {
	for port := inject.FirstAgentPort; port < inject.FirstAgentPort+1000; port++ {
		ok := true
		for _, p := range pods {
			if !inspect.ForwardUsable(p, port, appPort) {
				ok = false
				break
			}
		}
		if ok {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port from %d to %d is free in every pod", inject.FirstAgentPort, inject.FirstAgentPort+999)
}

// ephemeralSupported refuses a cluster that does not serve the pods'
// ephemeralcontainers subresource (before Kubernetes 1.23, or with the
// feature off). A discovery error says nothing: the update will tell.
func ephemeralSupported(cs kubernetes.Interface) error {
	res, err := cs.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil || res == nil || len(res.APIResources) == 0 {
		return nil
	}
	for _, r := range res.APIResources {
		if r.Name == "pods/ephemeralcontainers" {
			return nil
		}
	}
	return errdefs.Withf(ErrNoEphemeral, "this cluster serves no pods/ephemeralcontainers, so tether cannot add its agent to a running pod "+
		"(Kubernetes 1.25 or later has it): intercept without --no-restart")
}

// podReady: the pod runs, is ready and is not being deleted.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startNoRestart runs an intercept --no-restart (see MarkLabel).
func (m *Manager) startNoRestart(ctx context.Context, req Request) (*Intercept, error) {
	// The joins report from goroutines of their own; after the start
	// returns, the background's joins and the follower's go to the log.
	progress, returned := serialProgress(m.Progress, m.Log, "intercept --no-restart: ")
	defer returned()
	if req.RolloutTimeout == 0 {
		req.RolloutTimeout = 3 * time.Minute
	}
	tl := newTimeline()
	end := tl.begin("plan", "")
	np, err := m.planNoRestart(ctx, req)
	end()
	if err != nil {
		return nil, err
	}
	w := np.w
	store := journal.Store{CS: m.CS}
	end = tl.begin("journal", "")
	entry, err := store.Begin(ctx, np.entry())
	end()
	if err != nil {
		return nil, err
	}
	if !entry.Created() {
		return nil, errdefs.FailedCheck("another tether began a change to %s just now; run `tether rollback %s` to see it", w, w)
	}
	f := m.newFollower(req, np)
	f.progress = progress
	f.tl.Store(tl)
	f.journaledAll()
	fail := func(cause error) (*Intercept, error) {
		progress("undoing this intercept's changes to " + w.String())
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, f.undo(rctx, cause)
	}
	// The readiness check's probe pods for the nodes none of the pods runs
	// on start now, while the agents join.
	var early *nodeProbers
	if serviceAddr(np.svc, np.port) != "" {
		early = m.earlyProbers(ctx, w.Namespace, req.AgentImage, nodeSet(np.nodes()))
		defer early.close()
	}
	progress(fmt.Sprintf("adding the agent to %d running pods of %s as an ephemeral container (port %d in front of %d; no pod restarts)",
		len(np.pods), w, np.agentPort, np.appPort))
	// Every pod's agent is added and connected to at once. The kubelet
	// starts each when it next looks at its pod, up to a second apart
	// (its pod-lifecycle relist), and the nodes apply a Service's new
	// endpoints up to a second after the last time they did (kube-proxy's
	// minimum sync period): the Service is pointed at the first pods whose
	// agents answer, so that the nodes apply it while the other agents
	// start (firstPods).
	// The joins outlive the call when it returns before the last pods
	// joined (joinRest).
	jctx, cancelJoins := context.WithCancel(context.WithoutCancel(ctx))
	joins := f.connectAll(jctx, np.pods)
	handedOff := false
	defer func() {
		if !handedOff {
			cancelJoins()
		}
	}()
	failJoins := func(cause error) (*Intercept, error) {
		cancelJoins()
		joins.drain() // none may add a tunnel after undo closed them
		return fail(cause)
	}
	end = tl.begin("first-agents", "")
	first, err := joins.gather(ctx, firstPods(req))
	end()
	if err != nil {
		return failJoins(err)
	}
	end = tl.begin("first-marks", "")
	err = f.markAll(ctx, first)
	end()
	if err != nil {
		return failJoins(err)
	}
	if len(first) < len(np.pods) {
		progress(fmt.Sprintf("the agents of %d of %d pods answer: pointing service/%s port %d at them; the others join as their agents answer",
			len(first), len(np.pods), np.svc.Name, np.port.Port))
	} else {
		progress(fmt.Sprintf("pointing service/%s port %d at the agents of the marked pods", np.svc.Name, np.port.Port))
	}
	end = tl.begin("service", "")
	err = f.retarget(ctx)
	end()
	if err != nil {
		return failJoins(err)
	}
	end = tl.begin("endpoints", "")
	err = waitMarked(ctx, m.CS, np, f.marked, req.RolloutTimeout, progress)
	end()
	if err != nil {
		return failJoins(err)
	}
	// Ready when a probe through the Service's address reaches the agent
	// of every marked pod (ready.go), as for a sidecar intercept.
	svc := np.svc.DeepCopy()
	svc.Spec.Selector, svc.Spec.Ports = np.selector, np.ports
	end = tl.begin("ready", "")
	err = m.checkReady(ctx, svc, np.port, np.nodes(), f.markedAgents(), req.AgentImage, early, progress)
	end()
	if err != nil {
		return failJoins(err)
	}
	// The other pods are marked as their agents answer, in the
	// background: the marked pods' agents, which every new connection now
	// reaches, carry all of the port's traffic to this machine meanwhile,
	// and the Service adds the others as they are marked. One that fails
	// to join stays out of the Service (the follower tries it again), as a
	// pod added later would; the intercept does not wait for the slowest
	// pod's kubelet.
	rest := len(np.pods) - len(first)
	f.log.Info("intercept --no-restart started", "workload", w.String(), "pods", len(first), "joining", rest,
		"took", time.Since(tl.start), "steps", tl.String(), "timeline", tl.Spans())
	if rest > 0 {
		progress(fmt.Sprintf("intercepting through %d of %d pods; the agents of the other %d join in the background (`tether status` shows them)",
			len(first), len(np.pods), rest))
		handedOff = true
		f.restCancel, f.restDone = cancelJoins, make(chan struct{})
		go f.joinRest(jctx, joins)
	} else {
		f.tl.Store(nil)
	}
	f.follow(ctx)
	f.t.settle(ctx) // the first pods' direct paths (tunnels.dial)
	return &Intercept{Workload: w, Service: np.svc.Name, ServicePort: np.port, AgentPort: np.agentPort, LocalPort: req.LocalPort,
		Spec: f.t.spec, NoRestart: true, tunnels: f.t, follower: f}, nil
}

// firstPods is how long, once one pod's agent answers, the Service waits
// for the others' before it is pointed at those that answer: agents that
// start in the same turn of the kubelet answer within this of each other,
// and are then added in one change (each change of a Service's endpoints
// may hold the next one's sync on the nodes for a second). Only an
// intercept that takes all of a port's traffic (the agents send it all to
// this machine) starts with some pods: where the app still serves
// (recording, filters, mirrors), the Service waits for every pod's agent,
// so that no pod of the app takes the others' share meanwhile.
func firstPods(req Request) time.Duration {
	if req.RecordOnly || req.Mirror || !req.Filter.IsZero() {
		return -1
	}
	return FirstPods
}

// FirstPods is firstPods' wait. On the local cluster, agents the kubelet
// started in one turn answered within 0-50 ms of each other, and turns
// were 250 ms to a second apart (the bench's steps, -only modes).
const FirstPods = 100 * time.Millisecond

// nodes maps the planned pods to their nodes.
func (np *noRestartPlan) nodes() map[string]string {
	out := make(map[string]string, len(np.pods))
	for _, p := range np.pods {
		out[p.Name] = p.Spec.NodeName
	}
	return out
}

// markedAgents gives the agents of the marked pods.
func (f *follower) markedAgents() map[string]agent.Service {
	marked := f.marked()
	out := map[string]agent.Service{}
	for pod, a := range f.t.agents() {
		if marked[pod] {
			out[pod] = a
		}
	}
	return out
}

// retarget points the Service at the agents of the marked pods, if it is
// still as planned from; its selector and ports are journaled first
// (np.entry, or here when the journal was begun without them).
func (f *follower) retarget(ctx context.Context) error {
	np := f.np
	if !f.svcJournaled {
		err := f.journal(ctx, func(e *journal.Entry) error {
			if e.Services == nil {
				e.Services = map[string]journal.ServiceEntry{}
			}
			e.Services[np.svc.Name] = np.serviceEntry()
			return nil
		})
		if err != nil {
			return err
		}
		f.svcJournaled = true
	}
	// The Service as planned from, at the version read then: a conflict
	// reads it again and checks that nobody changed what tether changes.
	svc := np.svc.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if svc == nil {
			cur, err := f.cs.CoreV1().Services(np.w.Namespace).Get(ctx, np.svc.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !equality.Semantic.DeepEqual(cur.Spec.Ports, np.svc.Spec.Ports) || !equality.Semantic.DeepEqual(cur.Spec.Selector, np.svc.Spec.Selector) {
				return fmt.Errorf("service %s changed meanwhile: %w", np.svc.Name, ErrPortsChanged)
			}
			svc = cur
		}
		svc.Spec.Selector, svc.Spec.Ports = np.selector, np.ports
		_, err := f.cs.CoreV1().Services(np.w.Namespace).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		svc = nil
		return err
	})
}

// waitMarked waits until the Service's ready endpoints of the intercepted
// port are exactly the pods marked() names, on the agent's port.
func waitMarked(ctx context.Context, cs kubernetes.Interface, np *noRestartPlan, marked func() map[string]bool, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	svc := np.svc.Name
	start, last := time.Now(), time.Time{}
	for {
		have, err := readyEndpoints(ctx, cs, np.w.Namespace, svc, np.port.Name, np.agentPort)
		if err != nil {
			return err
		}
		want := marked()
		if maps.Equal(have, want) {
			return nil
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for service/%s to route to the %d marked pods (it routes to %d), %s",
				svc, len(want), len(have), time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service/%s does not route to exactly the marked pods after %s", svc, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readyEndpoints returns the pods the Service's EndpointSlices name as
// ready on port (the Service port named portName): until the endpoints
// controller applies a new targetPort, the slices still carry the old.
func readyEndpoints(ctx context.Context, cs kubernetes.Interface, ns, svc, portName string, port int) (map[string]bool, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
	if err != nil {
		return nil, fmt.Errorf("list the endpoints of service/%s: %w", svc, err)
	}
	out := map[string]bool{}
	for _, s := range slices.Items {
		onPort := false
		for _, p := range s.Ports {
			onPort = onPort || (p.Port != nil && int(*p.Port) == port && (p.Name == nil || *p.Name == portName))
		}
		if !onPort {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				out[ep.TargetRef.Name] = true
			}
		}
	}
	return out, nil
}

// undoNoRestart restores what an intercept --no-restart changed, from its
// journal: the Service first, then the marks (rollback.Restore).
func undoNoRestart(ctx context.Context, cs kubernetes.Interface, w journal.Workload) ([]rollback.Step, error) {
	steps, err := rollback.Restore(ctx, cs, w, false)
	if errors.Is(err, errdefs.ErrNotFound) {
		return steps, nil
	}
	return steps, err
}
