package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
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
	// releases set pinned rollouts' selectors back after their intercepts
	// returned; a rollback and the daemon's stop wait for them.
	releases *intercept.Releases
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
		quit: make(chan struct{}), unlistened: make(chan struct{}), intercepts: map[string]*intercept.Intercept{}, starting: map[string]bool{}, kept: &intercept.KeptLinks{},
		releases: &intercept.Releases{}}, nil
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
	// A pinned rollout's selector left held would not select the pods of
	// the workload's next template.
	rctx, cancel := context.WithTimeout(ctx, intercept.ReleaseTimeout)
	defer cancel()
	d.releases.Wait(rctx, "")
}
