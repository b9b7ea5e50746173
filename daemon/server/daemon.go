package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/portforward"
	"github.com/tetherkube/tether/tunnel"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/localuser"
	"github.com/tetherkube/tether/recording"
)

// Daemon implements Service against one cluster.
type Daemon struct {
	context string
	rc      *rest.Config
	cs      kubernetes.Interface
	dialer  intercept.Dialer // a *portforward.Dialer but in tests
	log     *slog.Logger
	quit    chan struct{}
	// unlistened is closed once Serve stopped accepting on its sockets.
	unlistened chan struct{}

	mu         sync.Mutex
	quitOnce   sync.Once
	intercepts map[string]*intercept.Intercept // by namespace + "/" + workload
	starting   map[string]bool                 // intercepts being started, same keys
	runs       map[string]*activeRun           // by id
	ranges     map[string]cachedRanges         // the cluster's ranges by namespace, for runs
	allowed    map[string]time.Time            // when a permission check last passed, by feature, namespace and objects
	// dialSocket is where runs' processes ask for connections (Serve).
	dialSocket string
	// paths opens direct paths with a key and certificate made for this
	// daemon run and kept in memory only.
	paths *agent.PathChooser
	// agentProf profiles the agents the daemon links to; nil: off.
	agentProf *agentProfiles
	// kept holds the tunnels ended intercepts left open for the next
	// intercept of the same workload; nil keeps none.
	kept *intercept.KeptLinks
	// asides watch the agents of ended intercepts, to step them aside
	// once idle (aside.go).
	asides asideWatches
}

var _ daemon.Service = (*Daemon)(nil)

// owner is who this daemon intercepts as, shown to other users of the
// same workload: the local user at this machine.
func (d *Daemon) owner() string { return localuser.Owner() }

// New returns a Daemon for the cluster rc reaches; kubeContext is the
// context's name, for Status.
func New(rc *rest.Config, kubeContext string, log *slog.Logger) (*Daemon, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	d, err := portforward.NewDialer(rc)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := tunnel.NewIdentity()
	if err != nil {
		return nil, err
	}
	return &Daemon{context: kubeContext, rc: rc, cs: cs, dialer: d, log: log, paths: &agent.PathChooser{Identity: id, Logger: log},
		quit: make(chan struct{}), unlistened: make(chan struct{}), intercepts: map[string]*intercept.Intercept{}, starting: map[string]bool{}, kept: &intercept.KeptLinks{}}, nil
}

// Quitting is closed when Quit was called.
func (d *Daemon) Quitting() <-chan struct{} { return d.quit }

// Status reports the connection and the intercepts.
func (d *Daemon) Status(ctx context.Context) (daemon.Status, error) {
	st := daemon.Status{Context: d.context, Server: d.rc.Host, DaemonVersion: buildinfo.Identity(), PID: os.Getpid()}
	if v, err := d.cs.Discovery().ServerVersion(); err == nil {
		st.ServerVersion = v.GitVersion
	}
	d.mu.Lock()
	ics := make([]*intercept.Intercept, 0, len(d.intercepts))
	for _, ic := range d.intercepts {
		ics = append(ics, ic)
	}
	d.mu.Unlock()
	for _, ic := range ics {
		i := info(ic)
		d.portIntercepts(ctx, ic, &i)
		st.Intercepts = append(st.Intercepts, i)
	}
	sort.Slice(st.Intercepts, func(i, j int) bool {
		return st.Intercepts[i].Namespace+st.Intercepts[i].Name < st.Intercepts[j].Namespace+st.Intercepts[j].Name
	})
	st.Agents = d.agents(ctx)
	st.Sessions = d.sessions(ctx)
	return st, nil
}

// portIntercepts fills i with everyone's intercepts of ic's port, as the
// agent of ic's first pod reports them; nothing when it does not answer
// within 2 s.
func (d *Daemon) portIntercepts(ctx context.Context, ic *intercept.Intercept, i *daemon.InterceptInfo) {
	pods := ic.Pods()
	if len(pods) == 0 {
		return
	}
	l := ic.Link(pods[0])
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ai, err := l.Agent().Info(ctx)
	if err != nil {
		d.log.Debug("status: agent info", "pod", pods[0], "err", err)
		return
	}
	for _, f := range ai.Forwards {
		if f.ListenPort != ic.AgentPort {
			continue
		}
		i.ToApp, i.NotHTTP, i.TLS = f.ToApp, f.NotHTTP, f.TLS
		for _, s := range f.Intercepts {
			i.PortIntercepts = append(i.PortIntercepts, daemon.PortIntercept{Owner: s.Owner, Filter: s.Filter, Mirror: s.Mirror,
				Since: s.Since, Requests: s.Requests, Dropped: s.Dropped, Shed: s.Shed, Pod: pods[0]})
		}
	}
}

// agents lists the workloads with tether's agent from the journals in
// every namespace the user may list, reading how each agent records from
// its arguments. Without that permission the list is empty.
func (d *Daemon) agents(ctx context.Context) []daemon.AgentInfo {
	entries, err := journal.Store{CS: d.cs}.List(ctx, "")
	if err != nil {
		d.log.Debug("status: no journals listed", "err", err)
		return nil
	}
	var out []daemon.AgentInfo
	defer func() {
		// Each agent says whether it is idle, all workloads at once.
		var wg sync.WaitGroup
		for i := range out {
			d.mu.Lock()
			ic := d.intercepts[out[i].Namespace+"/"+out[i].Workload]
			d.mu.Unlock()
			wg.Go(func() { out[i].Pods = d.agentPods(ctx, out[i].Namespace, out[i].Workload, ic) })
		}
		wg.Wait()
	}()
	for _, e := range entries {
		if e.NoRestart {
			d.mu.Lock()
			_, held := d.intercepts[e.Workload.Namespace+"/"+e.Workload.String()]
			d.mu.Unlock()
			if !held {
				out = append(out, daemon.AgentInfo{Workload: e.Workload.String(), Namespace: e.Workload.Namespace, NoRestartUnheld: true})
			}
			continue
		}
		tmpl, err := workload.Client{CS: d.cs}.Template(ctx, e.Workload)
		if err != nil {
			continue
		}
		for _, c := range tmpl.Spec.Containers {
			if c.Name != inject.AgentContainer {
				continue
			}
			a := daemon.AgentInfo{Workload: e.Workload.String(), Namespace: e.Workload.Namespace, Recording: true,
				Redacted: append([]string(nil), recording.DefaultRedactedHeaders...)}
			for i, arg := range c.Args {
				switch {
				case arg == "--no-record":
					a.Recording = false
				case arg == "--no-redact":
					a.RedactionOff = true
				case arg == "--redact" && i+1 < len(c.Args):
					a.Redacted = append(a.Redacted, strings.Split(c.Args[i+1], ",")...)
				}
			}
			if a.RedactionOff {
				a.Redacted = nil
			}
			out = append(out, a)
		}
	}
	return out
}

// permitted refuses, before anything changes, when the user lacks a
// permission feature f needs in namespace: a half-done change the user may
// not undo is worse than none. what names the feature in the message; role
// names the Role to ask for and where it is. A pass is reused for
// permittedTTL by the checks of the same feature, namespace and objects; a
// refusal is never reused.
func (d *Daemon) permitted(ctx context.Context, f access.Feature, namespace string, o access.Objects, what, role string) error {
	key := fmt.Sprintf("%v|%s|%#v", f, namespace, o)
	d.mu.Lock()
	at, ok := d.allowed[key]
	d.mu.Unlock()
	if ok && time.Since(at) < permittedTTL {
		return nil
	}
	missing, err := access.Missing(ctx, d.cs, namespace, access.Rules(f, o))
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return errdefs.User("you may not do everything %s needs in namespace %s; missing:\n%s"+
			"ask your cluster admin for %s", what, namespace, access.Describe(missing), role)
	}
	d.mu.Lock()
	if d.allowed == nil {
		d.allowed = map[string]time.Time{}
	}
	d.allowed[key] = time.Now()
	d.mu.Unlock()
	return nil
}

// permittedTTL is how long a passed permission check is reused: a loop of
// runs, env reads or traces would otherwise spend most of its time, and
// the API server's rate limit, on the same access reviews. The daemon acts
// with the user's own credentials, so the API server still enforces every
// request; a revoked permission only changes which error the user sees,
// for up to a minute.
const permittedTTL = time.Minute

// The Roles a refusal asks for (docs/intercept.md, "Permissions tether needs").
const (
	userRole = "the Role in docs/intercept.md"
	// noRestartRole is intercept --no-restart's.
	noRestartRole = "the tether-no-restart Role in docs/intercept.md"
	inspectRole   = "the tether-inspect Role in docs/intercept.md (docs/inspect.md says what each check needs)"
	runRole       = "the tether-run Role in docs/intercept.md"
)

// accessObjects names the objects an intercept, record or rollback of w
// touches, for the permission check.
func accessObjects(w journal.Workload) access.Objects {
	return access.Objects{Kind: w.Kind, Workload: w.Name, Secret: w.TokenSecretName(), Journal: w.ConfigMapName(), JournalKey: w.KeySecretName()}
}

// agentResources returns the agent container's requests and limits: tether's
// defaults for a recording budget of budget bytes, with what r gives in
// their place; nil when r gives nothing. A request given alone keeps the
// default limit, raised to the request when below it; a limit given alone
// keeps the default request, lowered to the limit when above it. The checks against
// what the agent needs are inject's.
func agentResources(r daemon.AgentResources, budget int64) (*corev1.ResourceRequirements, error) {
	if r == (daemon.AgentResources{}) {
		return nil, nil
	}
	out := inject.DefaultResources(budget)
	for _, v := range []struct {
		name           corev1.ResourceName
		flag           string
		request, limit string
	}{
		{corev1.ResourceCPU, "--agent-cpu", r.CPURequest, r.CPULimit},
		{corev1.ResourceMemory, "--agent-memory", r.MemoryRequest, r.MemoryLimit},
	} {
		if v.request != "" {
			q, err := resource.ParseQuantity(v.request)
			if err != nil {
				return nil, errdefs.User("%s: request %q is not a Kubernetes quantity (e.g. 64Mi, 250m)", v.flag, v.request)
			}
			out.Requests[v.name] = q
			if v.limit == "" && q.Cmp(out.Limits[v.name]) > 0 {
				out.Limits[v.name] = q
			}
		}
		if v.limit != "" {
			q, err := resource.ParseQuantity(v.limit)
			if err != nil {
				return nil, errdefs.User("%s: limit %q is not a Kubernetes quantity (e.g. 256Mi, 1)", v.flag, v.limit)
			}
			out.Limits[v.name] = q
			if v.request == "" && q.Cmp(out.Requests[v.name]) < 0 {
				out.Requests[v.name] = q
			}
		}
	}
	return &out, nil
}

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
	recordArgs := agentIdleArgs(req.AgentIdle)
	if req.Passive {
		if err := d.recordForMirror(ctx, w, req, progress); err != nil {
			return daemon.InterceptInfo{}, err
		}
		res, recordArgs = nil, nil // the recording's agents took them
	}
	m := &intercept.Manager{CS: d.cs, Dialer: d.dialer, Log: d.log, Progress: progress, Paths: d.paths, OnLink: d.agentProf.watch, Kept: d.kept}
	ic, err := m.Start(ctx, intercept.Request{
		Namespace: req.Namespace, Workload: w.String(), Resolved: w, ServicePort: req.ServicePort, LocalPort: req.LocalPort,
		AgentImage: req.AgentImage, RolloutTimeout: time.Duration(req.RolloutTimeout) * time.Second,
		AgentResources: res, LocalPortLater: req.LocalPortLater,
		Filter: req.Filter, Mirror: req.Mirror, ID: randomHex(8), Owner: d.owner(), Path: path, NoRestart: req.NoRestart,
		RecordArgs: recordArgs,
	})
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

// Rollback restores journaled workloads.
func (d *Daemon) Rollback(ctx context.Context, req daemon.RollbackRequest) ([]daemon.RollbackResult, error) {
	var targets []journal.Workload
	gateways := map[journal.Workload]bool{}  // journals of gateways (tether run's), whose rollback deletes them
	noRestart := map[journal.Workload]bool{} // journals of intercepts --no-restart
	if req.All {
		if err := d.permitted(ctx, access.RollAll, req.Namespace, access.Objects{}, "rollback --all", userRole); err != nil {
			return nil, err
		}
		entries, err := journal.Store{CS: d.cs}.List(ctx, req.Namespace)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			targets = append(targets, e.Workload)
			gateways[e.Workload] = e.Gateway
			noRestart[e.Workload] = e.NoRestart
		}
	} else {
		kind, name, err := workload.ParseRef(req.Workload)
		if err != nil {
			return nil, errdefs.Mark(errdefs.ErrUser, err)
		}
		e, err := d.journaledWorkload(ctx, req.Namespace, kind, name)
		if errors.Is(err, errdefs.ErrUser) {
			if res, ok := d.dropOrphanKeys(ctx, req.Namespace, kind, name); ok {
				return res, nil
			}
		}
		if err != nil {
			return nil, err
		}
		targets = append(targets, e.Workload)
		gateways[e.Workload] = e.Gateway
		noRestart[e.Workload] = e.NoRestart
	}
	// Each journal's own objects (its token Secret, the journal), now that
	// they are known, before restoring any: a Role may grant them by name.
	for _, w := range targets {
		objs, role := accessObjects(w), userRole
		if gateways[w] {
			objs.Gateway, role = true, runRole
		}
		if noRestart[w] {
			objs.NoRestart, role = true, noRestartRole
		}
		if err := d.permitted(ctx, access.Rollback, w.Namespace, objs, "rolling back "+w.String(), role); err != nil {
			return nil, err
		}
	}
	var results []daemon.RollbackResult
	for _, w := range targets {
		key := w.Namespace + "/" + w.String()
		d.mu.Lock()
		ic := d.intercepts[key]
		delete(d.intercepts, key)
		d.mu.Unlock()
		if ic != nil {
			_ = ic.Release(ctx) // the rollback restores what it changed
		}
		d.kept.Drop(intercept.KeepKey(w.Namespace, w.String()))
		d.asides.stop(key)
		res := daemon.RollbackResult{Workload: w.String(), Namespace: w.Namespace}
		steps, err := rollback.Restore(ctx, d.cs, w, req.Force)
		for _, s := range steps {
			res.Steps = append(res.Steps, daemon.RollbackStep{Object: s.Object, Action: s.Action, Reason: s.Reason})
		}
		if err != nil {
			res.Error = err.Error()
		}
		d.log.Info("rollback", "workload", key, "steps", steps, "err", err)
		results = append(results, res)
	}
	return results, nil
}

// dropOrphanKeys removes the journal keys a rollback interrupted between
// deleting a journal and its key left for the workload name (of kind, or
// either), and reports them as that rollback's last step; false when there
// was none.
func (d *Daemon) dropOrphanKeys(ctx context.Context, namespace, kind, name string) ([]daemon.RollbackResult, bool) {
	var out []daemon.RollbackResult
	for _, k := range []string{workload.Deployment, workload.StatefulSet} {
		if kind != "" && kind != k {
			continue
		}
		w := journal.Workload{Kind: k, Namespace: namespace, Name: name}
		if err := d.permitted(ctx, access.Rollback, namespace, accessObjects(w), "rolling back "+w.String(), userRole); err != nil {
			continue
		}
		dropped, err := journal.Store{CS: d.cs}.DropOrphanKey(ctx, w)
		if err != nil {
			d.log.Warn("journal key without its journal", "workload", w.String(), "err", err)
			continue
		}
		if dropped {
			d.log.Info("rollback: removed a journal key left without its journal", "workload", w.String())
			out = append(out, daemon.RollbackResult{Workload: w.String(), Namespace: namespace, Steps: []daemon.RollbackStep{{
				Object: "secret/" + w.KeySecretName(), Action: "deleted",
				Reason: "the journal's key, left when a rollback was interrupted after removing the journal"}}})
		}
	}
	return out, len(out) > 0
}

// journaledWorkload finds the journal entry a reference names; a bare name may
// match a deployment's or a statefulset's journal. A bare name whose journal
// of one kind the user may not read (a Role granting the journal by name
// grants one kind's) is not of that kind when the other kind's is readable.
func (d *Daemon) journaledWorkload(ctx context.Context, namespace, kind, name string) (*journal.Entry, error) {
	store := journal.Store{CS: d.cs}
	var found []*journal.Entry
	var forbidden error
	read := 0
	for _, k := range []string{workload.Deployment, workload.StatefulSet} {
		if kind != "" && kind != k {
			continue
		}
		w := journal.Workload{Kind: k, Namespace: namespace, Name: name}
		e, err := store.Load(ctx, w)
		if kind == "" && apierrors.IsForbidden(err) {
			if forbidden == nil {
				forbidden = err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		read++
		if e != nil {
			found = append(found, e)
		}
	}
	if read == 0 && forbidden != nil {
		return nil, forbidden
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, errdefs.User("tether has no journal for %q in namespace %s: nothing to roll back (`tether rollback --all` lists and restores every journal)",
			name, namespace)
	default:
		return nil, errdefs.User("both deploy/%s and sts/%s have journals; say which", name, name)
	}
}

// Quit leaves every intercept and signals the daemon to stop; it returns
// once Serve no longer accepts on the daemon's sockets, so the next
// command starts a new daemon instead of reaching this one as it goes.
func (d *Daemon) Quit(ctx context.Context) error {
	d.agentProf.collectAll()
	d.LeaveAll(ctx)
	d.quitOnce.Do(func() { close(d.quit) })
	select {
	case <-d.unlistened:
	case <-ctx.Done():
	case <-time.After(5 * time.Second): // a Daemon that Serve never served
	}
	return nil
}

// LeaveAll stops every intercept and closes the tunnels kept for the
// next one: the daemon is stopping.
func (d *Daemon) LeaveAll(ctx context.Context) {
	d.mu.Lock()
	all := d.intercepts
	d.intercepts = map[string]*intercept.Intercept{}
	d.mu.Unlock()
	for key, ic := range all {
		if err := ic.Leave(ctx); err != nil {
			d.log.Warn("leave", "workload", key, "err", err)
		}
	}
	d.asides.stopAll()
	d.kept.Close()
}
