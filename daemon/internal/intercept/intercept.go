// Package intercept sends a workload's traffic to a port on this machine:
// it injects the agent (journaling every change first), waits for the
// rollout, holds a tunnel to the agent of every ready pod, and passes each
// intercepted connection to the local port.
package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/buildinfo"

	"github.com/tetherkube/tether/internal/errdefs"
)

// ProxySettle is how long an intercept waits, once the Service's endpoints
// name only agent pods, for kube-proxy to apply them on the nodes, when
// the agents cannot be asked to check it (an agent image from before
// readiness probes; ready.go).
const ProxySettle = 2 * time.Second

// Request is what to intercept.
type Request struct {
	Namespace string
	// Workload is deploy/NAME, sts/NAME or NAME.
	Workload string
	// Resolved, when its Name is set, is Workload already resolved by the
	// caller: Start does not look it up again.
	Resolved journal.Workload
	// ServicePort is the Service port's name or number.
	ServicePort string
	// LocalPort is where intercepted connections go on this machine.
	LocalPort int
	// AgentImage is the image of the agent container.
	AgentImage string
	// RolloutTimeout bounds the wait for the agent to run in every pod.
	RolloutTimeout time.Duration
	// LocalPortLater: the process listening on LocalPort starts after the
	// intercept (intercept -- CMD), so LocalPort is not checked.
	LocalPortLater bool
	// RecordOnly puts the agent in front of the port to record its traffic
	// without intercepting it: no local port, no tunnels.
	RecordOnly bool
	// RecordArgs are the agent's recording flags.
	RecordArgs []string
	// AgentResources are the agent container's requests and limits; nil
	// gives inject.DefaultResources.
	AgentResources *corev1.ResourceRequirements
	// Filter selects the requests this intercept takes (zero: all of the
	// port's traffic); Mirror takes copies while the app answers. ID and
	// Owner name the intercept to the agents and to other users.
	Filter    httpfilter.Spec
	Mirror    bool
	ID, Owner string
	// Path is the path the tunnels take (agent.PathChooser); empty is auto.
	Path agent.Path
	// NoRestart adds the agent to the running pods as an ephemeral
	// container and changes no pod template (norestart.go); it needs ID.
	NoRestart bool
}

// Dialer reaches a pod's port through the API server.
type Dialer interface {
	DialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error)
}

// Manager starts intercepts.
type Manager struct {
	CS     kubernetes.Interface
	Dialer Dialer
	Log    *slog.Logger
	// Progress receives one line per step and per second of waiting.
	Progress func(string)
	// Settle overrides ProxySettle, the fixed wait used only when the
	// agents cannot be asked to check readiness (tests).
	Settle time.Duration
	// ReadyTimeout overrides ReadyTimeout (tests).
	ReadyTimeout time.Duration
	// Paths opens the direct paths (tunnel/spec.md, section 4); nil
	// offers none.
	Paths *agent.PathChooser
	// OnLink, when set, is called with each tunnel to an agent once it
	// intercepts (the daemon profiles the agent there).
	OnLink func(ctx context.Context, pod string, l *agent.Link)
	// Kept holds the tunnels a sidecar intercept keeps when it ends, for
	// the next one (kept.go); nil keeps none.
	Kept *KeptLinks
	// Releases, when set, sets a pinned rollout's Service selector back
	// after the intercept returned (pin.go); nil: before it returns.
	Releases *Releases
}

func (m *Manager) settle() time.Duration {
	if m.Settle > 0 {
		return m.Settle
	}
	return ProxySettle
}

// Intercept is a running intercept.
type Intercept struct {
	Workload    journal.Workload
	Service     string
	ServicePort corev1.ServicePort
	AgentPort   int
	LocalPort   int
	// Spec is what each agent was asked for: the filter, mirror, id and
	// owner.
	Spec agent.InterceptSpec
	// NoRestart: the agents are ephemeral containers of the running pods
	// (norestart.go).
	NoRestart bool

	tunnels  *tunnels
	follower *follower
}

// Start checks the request, changes the cluster (journaled), waits for the
// rollout and connects to every agent. On any failure after the first
// change it undoes what it changed, and only that: an object someone
// changed meanwhile is left as is (the error says so), and a journal it
// found (left by an earlier intercept) is left as it found it.
func (m *Manager) Start(ctx context.Context, req Request) (*Intercept, error) {
	if req.NoRestart {
		return m.startNoRestart(ctx, req)
	}
	for try := 1; ; try++ {
		ic, err := m.start(ctx, req)
		// Another change to the template won the race (another tether
		// intercepting the same workload): plan again from what is there
		// now, which may be an agent to reuse.
		if try < 3 && errors.Is(err, workload.ErrTemplateChanged) && !errors.Is(err, errUndoIncomplete) {
			continue
		}
		return ic, err
	}
}

func (m *Manager) start(ctx context.Context, req Request) (*Intercept, error) {
	// The endpoints' wait reports from a goroutine of its own (below).
	progress, returned := serialProgress(m.Progress, m.Log, "intercept: ")
	defer returned()
	if req.RolloutTimeout == 0 {
		req.RolloutTimeout = 3 * time.Minute
	}
	tl := newTimeline()
	defer func() { tl.log(m.Log, req.Namespace+"/"+req.Workload) }()
	p, err := m.prepare(ctx, req, tl)
	if err != nil {
		return nil, err
	}
	w, tmpl, svc, back, plan, secretName := p.w, p.tmpl, p.svc, p.back, p.plan, p.secretName
	tl.mark("checks")
	if back != nil && req.RecordOnly && plan.Existing && inject.RecordsPassively(&plan.Template) {
		// Recording from packets as asked, aside: the Service stays at the app.
		progress(fmt.Sprintf("%s already records from a copy of its pods' packets, the Service sending to the app", w))
		return recordOnly(w, svc, plan), nil
	}
	if back != nil && req.Mirror && plan.Existing && inject.RecordsPassively(&plan.Template) {
		// The agents copy from the packets they record (agent/server/
		// passive.go): the Service stays at the app, callers never wait.
		progress(fmt.Sprintf("%s records from a copy of its pods' packets: the mirror takes its copies from them, the Service sending to the app", w))
		return m.reuse(ctx, req, w, svc, plan, secretName, false, progress)
	}
	if back != nil {
		// The nodes' rules are then waited for as after a rollout.
		if svc, err = m.pointBack(ctx, w, back, progress); err != nil {
			return nil, err
		}
	}
	cameBack := back != nil
	if plan.Existing {
		ic, err := m.reuse(ctx, req, w, svc, plan, secretName, cameBack, progress)
		tl.mark("reused")
		return ic, err
	}

	// From here on the cluster changes: journal first, and on failure undo
	// what this attempt changed, and only that.
	//
	// Two reads of a few requests each need no journal and start beside
	// it: the dry run of the template's update, and the pinned rollout's
	// plan.
	var (
		expected = &plan.Template
		pn       *pin
		why      string
		pinErr   error
		reads    sync.WaitGroup
	)
	defer reads.Wait()
	reads.Go(func() {
		// Journal what is about to be applied first, so a crash right
		// after the update leaves a journal that recognises it: the
		// template as the server will store it (a dry run of the
		// update: its defaults added), else as sent; then what the
		// server stored, if that differs.
		if dry, err := (workload.Client{CS: m.CS}).DryRunTemplate(ctx, w, *tmpl, plan.Template); err == nil {
			expected = dry
		}
	})
	// The Service follows the rollout in one step where it can (pin.go).
	reads.Go(func() { pn, why, pinErr = m.planPin(ctx, req, w, svc) })
	store := journal.Store{CS: m.CS}
	first := &journal.Entry{
		Workload: w, Template: *tmpl,
		CreatedAt: time.Now().UTC(), By: "tether " + buildinfo.Get().Version,
	}
	if plan.Service != nil {
		first.Services = map[string]journal.ServiceEntry{svc.Name: {Ports: svc.Spec.Ports}}
	}
	begin := store.Begin
	if !p.journaled {
		begin = store.BeginNew
	}
	entry, err := begin(ctx, first)
	if err != nil {
		return nil, err
	}
	if !entry.Created() && entry.AppliedTemplateHash != "" && journal.Hash(tmpl) != entry.AppliedTemplateHash &&
		!equality.Semantic.DeepEqual(*tmpl, entry.Template) {
		// Adding to it would journal someone else's template as tether's,
		// and a rollback would then undo their change without a word.
		return nil, errdefs.FailedCheck("%s in namespace %s changed since tether changed it (someone edited it or rolled it out); "+
			"run `tether rollback %s` first to see what it can restore", w, w.Namespace, w)
	}
	tl.mark("begun")
	a := newAttempt(m, store, entry)
	fail := func(cause error) (*Intercept, error) {
		progress("undoing this attempt's changes to " + w.String())
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return nil, a.undo(rctx, cause)
	}
	if plan.Service != nil && entry.Created() {
		a.addedService = svc.Name
	} else if plan.Service != nil {
		err := a.update(ctx, func(e *journal.Entry) error {
			if e.Services == nil {
				e.Services = map[string]journal.ServiceEntry{}
			}
			if _, ok := e.Services[svc.Name]; !ok {
				e.Services[svc.Name] = journal.ServiceEntry{Ports: svc.Spec.Ports}
				a.addedService = svc.Name
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	token, tokenErr := a.ensureToken(ctx)
	reads.Wait()
	tl.mark("planned")
	if err := errors.Join(tokenErr, pinErr); err != nil {
		return fail(err)
	}
	if pn != nil {
		progress(fmt.Sprintf("holding service/%s to the running pods until every new pod's agent is ready", svc.Name))
		var ports []corev1.ServicePort
		if plan.Service != nil {
			ports = plan.Service.Spec.Ports
		}
		if err := a.pin(ctx, pn, journal.Hash(expected), svc, ports); err != nil {
			return fail(err)
		}
	} else {
		if m.Log != nil {
			m.Log.Info("intercept: rolling out as configured, the Service following each pod", "workload", w.String(), "why", why)
		}
		if err := a.setAppliedHash(ctx, journal.Hash(expected)); err != nil {
			return fail(err)
		}
	}
	tl.mark("journaled")
	if plan.Reconfigured {
		// An agent an intercept added pauses recording, and may step
		// aside, once idle; `tether record` asks for a recording until
		// rollback, with its own flags.
		progress(fmt.Sprintf("restarting the agent of %s to record as asked (%s; it ran with %s)", w,
			flagsOrNone(req.RecordArgs), flagsOrNone(plan.Was)))
	} else {
		progress(fmt.Sprintf("adding the agent to %s (agent port %d in front of %s:%d)", w, plan.AgentPort, plan.AppContainer, plan.AppPort))
	}
	var edit func(*appsv1.Deployment) error
	if pn != nil {
		edit = pn.settings
	}
	stored, err := workload.Client{CS: m.CS}.SetTemplateWith(ctx, w, *tmpl, plan.Template, edit)
	if err != nil {
		return fail(err)
	}
	a.tmplFrom, a.tmplTo = tmpl, stored
	if h := journal.Hash(stored); h != journal.Hash(expected) {
		if err := a.setAppliedHash(ctx, h); err != nil {
			return fail(err)
		}
	}
	tl.mark("applied")
	// The readiness check's probe pods for the nodes none of the pods runs
	// on start now, during the rollout (nodeprobers.go): the new pods are
	// likely to run where the old ones do, and the check starts one
	// where that guess was wrong.
	var early *nodeProbers
	if serviceAddr(svc, plan.ServicePort) != "" {
		if nodes, _, err := podNodes(ctx, m.CS, w.Namespace, labels.SelectorFromSet(svc.Spec.Selector).String()); err == nil {
			early = m.earlyProbers(ctx, w.Namespace, req.AgentImage, nodeSet(nodes))
			defer early.close()
		}
	}
	rw := newRolloutWaiter(m.CS)
	var pre *predial
	if !req.RecordOnly && m.Dialer != nil {
		// Each new pod's tunnel opens as soon as its agent is ready.
		pre = newPredial(ctx, m.tunnelsFor(req, w, "", int(plan.AgentPort), token), tl)
		defer pre.close()
		rw.agentReady, rw.podStarted = pre.pod, pre.started
	}
	if pn != nil {
		rw.pinned = pn.old
		pinned, next := pn, rw.agentReady
		rw.agentReady = func(p *corev1.Pod) {
			pinned.agentReady(p)
			if next != nil {
				next(p)
			}
		}
	}
	waited := time.Now()
	err = rw.wait(ctx, w, req.RolloutTimeout, progress)
	if errors.Is(err, errPinRoom) {
		// The configured rollout needs less room: it replaces the old
		// pods as it goes, within what is left of the same timeout.
		progress(fmt.Sprintf("%v; rolling out as %s is configured instead", err, w))
		if left := a.unpin(ctx); len(left) > 0 {
			return fail(fmt.Errorf("%w; and could not set back %s", err, strings.Join(left, ", ")))
		}
		a.pinned, pn, rw.pinned = nil, nil, ""
		err = rw.wait(ctx, w, max(req.RolloutTimeout-time.Since(waited), time.Second), progress)
	}
	if err != nil {
		return fail(err)
	}
	if pre != nil {
		pre.seen = rw.pods
	}
	tl.mark("rollout")
	// Three reads the switch does not change run beside it: the token as
	// the agents read it (a tether racing this one may have replaced the
	// Secret since this attempt wrote it), the pods' selector for the
	// tunnels, and the replicas the endpoints are waited for.
	var (
		sel             labels.Selector
		want            int
		readToken       []byte
		tokenRead       bool
		selErr, wantErr error
		switchReads     sync.WaitGroup
	)
	wantRead := make(chan struct{})
	go func() {
		defer close(wantRead)
		want, _, wantErr = rolloutDone(ctx, m.CS, w)
	}()
	readsTimed := tl.begin("token and selector", "")
	switchReads.Go(func() { sel, selErr = workload.Client{CS: m.CS}.Selector(ctx, w) })
	switchReads.Go(func() {
		if sec, err := m.CS.CoreV1().Secrets(w.Namespace).Get(ctx, secretName, metav1.GetOptions{}); err == nil {
			readToken, tokenRead = sec.Data[inject.TokenKey], true
		}
	})
	failSwitch := func(err error) (*Intercept, error) {
		switchReads.Wait()
		<-wantRead
		return fail(err)
	}
	switch {
	case pn != nil:
		var ports []corev1.ServicePort
		if plan.Service != nil {
			ports = plan.Service.Spec.Ports
		}
		progress(fmt.Sprintf("switching service/%s to the new pods", svc.Name))
		if err := a.switchPin(ctx, pn, svc, ports); err != nil {
			return failSwitch(err)
		}
		tl.mark("switched")
	case plan.Service != nil:
		progress(fmt.Sprintf("pointing service/%s port %d at the agent", svc.Name, plan.ServicePort.Port))
		if err := a.setAppliedPorts(ctx, svc, plan.Service.Spec.Ports); err != nil {
			return failSwitch(err)
		}
		ports, err := setPorts(ctx, m.CS, svc.Namespace, svc.Name, svc.Spec.Ports, plan.Service.Spec.Ports)
		if err != nil {
			return failSwitch(err)
		}
		a.portsFrom, a.portsTo = svc.Spec.Ports, ports
		if journal.Hash(ports) != journal.Hash(plan.Service.Spec.Ports) {
			if err := a.setAppliedPorts(ctx, svc, ports); err != nil {
				return failSwitch(err)
			}
		}
	}
	switchReads.Wait()
	readsTimed()
	if tokenRead {
		token = readToken
	}
	if selErr != nil {
		<-wantRead
		return fail(selErr)
	}
	// kube-proxy applies endpoint changes to each node's rules up to about a
	// second later (its minimum sync period); until then a new connection
	// may still go to a pod being replaced. The agents tell when it has
	// (ready.go).
	if req.RecordOnly {
		<-wantRead
		if wantErr != nil {
			return fail(wantErr)
		}
		if err := waitEndpoints(ctx, m.CS, svc.Namespace, svc.Name, want, req.RolloutTimeout, progress); err != nil {
			return fail(err)
		}
		if err := m.readyRecording(ctx, w, svc, plan, token, early, progress); err != nil {
			return fail(err)
		}
		return recordOnly(w, svc, plan), nil
	}
	// The EndpointSlices are waited for while the tunnels are taken and the
	// check runs: the check passes only once the nodes' rules, which follow
	// the slices, send the Service's connections to the agents alone; and
	// both must pass.
	ectx, stopEndpoints := context.WithCancel(ctx)
	defer stopEndpoints()
	endpoints := make(chan error, 1)
	go func() {
		timed := tl.begin("endpoints", "")
		<-wantRead
		err := wantErr
		if err == nil {
			err = waitEndpoints(ectx, m.CS, svc.Namespace, svc.Name, want, req.RolloutTimeout, progress)
		}
		timed()
		endpoints <- err
	}()
	failWith := func(err error) (*Intercept, error) {
		stopEndpoints()
		<-endpoints
		return fail(err)
	}
	progress(fmt.Sprintf("connecting to the agents of %s", w))
	ic, err := m.connect(ctx, req, w, svc, plan, token, pre, sel)
	if err != nil {
		return failWith(err)
	}
	tl.mark("tunnels")
	if err := m.readyIntercept(ctx, ic, svc, early, progress); err != nil {
		return failWith(err)
	}
	if err := <-endpoints; err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		ic.Leave(lctx)
		return fail(err)
	}
	tl.mark("ready")
	if pn != nil {
		// Only now, with every node's rules sending the Service's
		// connections to the new pods (the check), may the old pods go:
		// a release begun at the switch let them go 150-250 ms after it,
		// and a node's kube-proxy may wait up to a second to apply it.
		m.release(ctx, a, pn, tl, progress)
	}
	// The direct paths offered while the check and the release ran.
	settled := tl.begin("direct paths", "")
	ic.tunnels.settle(ctx)
	settled()
	return ic, nil
}

// flagsOrNone shows agent flags, or that there are none (the defaults).
func flagsOrNone(args []string) string {
	if len(args) == 0 {
		return "the default recording flags"
	}
	return strings.Join(args, " ")
}

// connect opens the tunnels to the workload's agents (sel selects its pods;
// nil: read it), taking those pre opened during the rollout (nil: none).
func (m *Manager) connect(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service, plan inject.Plan, token []byte, pre *predial,
	sel labels.Selector) (*Intercept, error) {
	if sel == nil {
		var err error
		if sel, err = (workload.Client{CS: m.CS}).Selector(ctx, w); err != nil {
			return nil, err
		}
	}
	t := m.tunnelsFor(req, w, sel.String(), int(plan.AgentPort), token)
	t.pre = pre
	if pre != nil {
		t.offers, t.tl = pre.t.offers, pre.tl // the offers its dials started
	}
	t.svc = svc.Name
	if err := t.start(ctx); err != nil {
		// The agents that did intercept send their port to the app again.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		t.leave(lctx)
		return nil, err
	}
	return &Intercept{
		Workload: w, Service: svc.Name, ServicePort: plan.ServicePort,
		AgentPort: int(plan.AgentPort), LocalPort: req.LocalPort, Spec: t.spec, tunnels: t,
	}, nil
}

// tunnelsFor returns the tunnels of an intercept of w's pods (sel), not
// started.
func (m *Manager) tunnelsFor(req Request, w journal.Workload, sel string, agentPort int, token []byte) *tunnels {
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := req.Path
	if path == "" {
		path = agent.PathAuto
	}
	if path == agent.PathAuto && m.Paths == nil {
		path = agent.PathPortForward
	}
	spec := agent.InterceptSpec{ListenPort: agentPort, ID: req.ID, Owner: req.Owner, Filter: req.Filter, Mirror: req.Mirror}
	t := newTunnels(m.CS, m.Dialer, log, w.Namespace, sel, token, spec, req.LocalPort)
	t.path, t.chooser = path, m.Paths
	t.onLink = m.OnLink
	t.keep, t.keepKey = m.Kept, KeepKey(w.Namespace, w.String())
	return t
}

// Link returns the intercept's live tunnel to pod's sidecar agent, or nil;
// `tether run` borrows it (the caller must not close it).
func (i *Intercept) Link(pod string) *agent.Link {
	if i.tunnels == nil {
		return nil
	}
	return i.tunnels.link(pod)
}

// Pods returns the pods whose agents this intercept has a tunnel to.
func (i *Intercept) Pods() []string {
	if i.tunnels == nil {
		return nil
	}
	return i.tunnels.pods()
}

// Paths says, by pod, which path its tunnel takes now.
func (i *Intercept) Paths() map[string]string {
	if i.tunnels == nil {
		return nil
	}
	return i.tunnels.paths()
}

// Leave stops the intercept: every agent sends its connections to the app
// again and the tunnels close, or stay open in the Manager's Kept for the
// next intercept. The agents stay, so leaving restarts nothing.
func (i *Intercept) Leave(ctx context.Context) error {
	if i.follower != nil {
		return i.follower.leave(ctx)
	}
	return i.tunnels.leave(ctx)
}

// Release stops the intercept like Leave, but leaves what an intercept
// --no-restart changed in the cluster (the Service, the marks, the
// journal) for a rollback to restore and report.
func (i *Intercept) Release(ctx context.Context) error {
	if i.follower != nil {
		i.follower.stop()
	}
	// The rollback replaces the pods (or takes their agents out of the
	// Service): nothing to keep a tunnel for.
	i.tunnels.stop()
	i.tunnels.keep = nil
	return i.tunnels.leave(ctx)
}
