package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/session"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// sessionRole is the Role a refusal of a session subcommand asks for.
const sessionRole = "the tether-session Role in docs/session.md"

// defaultRolloutTimeout bounds a session rollback's wait for each
// workload's rollout, unless the request says otherwise.
const defaultRolloutTimeout = 5 * time.Minute

// Compiled when first used, not at every start of the binary.
var sessionName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)
})

func (d *Daemon) sessionClient() (session.Client, error) {
	dyn, err := dynamic.NewForConfig(d.rc)
	if err != nil {
		return session.Client{}, err
	}
	return session.Client{Dyn: dyn}, nil
}

// SessionStart snapshots the namespace's objects in scope into Secrets
// there; the head Secret, created first, is the namespace's lock.
func (d *Daemon) SessionStart(ctx context.Context, req daemon.SessionStartRequest) (daemon.SessionInfo, error) {
	if req.Name == "" {
		req.Name = "session-" + time.Now().UTC().Format("20060102-150405")
	}
	if !sessionName().MatchString(req.Name) {
		return daemon.SessionInfo{}, errdefs.User("session name %q: use up to 63 lower-case letters, digits, '-', '_' or '.', starting and ending with a letter or digit", req.Name)
	}
	include, err := session.ParseRefs(req.Include)
	if err != nil {
		return daemon.SessionInfo{}, err
	}
	if err := d.namespaceExists(ctx, req.Namespace); err != nil {
		return daemon.SessionInfo{}, err
	}
	if err := d.permitted(ctx, access.SessionStart, req.Namespace, sessionObjects(include, nil), "session start", sessionRole); err != nil {
		return daemon.SessionInfo{}, err
	}
	sc, err := d.sessionClient()
	if err != nil {
		return daemon.SessionInfo{}, err
	}
	st := session.Store{CS: d.cs}
	m := session.Meta{Name: req.Name, Namespace: req.Namespace, Since: time.Now().UTC(), By: d.owner(), Include: include}
	head, err := st.Begin(ctx, m)
	if err != nil {
		return daemon.SessionInfo{}, err
	}
	snap, err := sc.Take(ctx, req.Namespace, include)
	if err == nil {
		m.Objects = len(snap.Objects)
		m, err = st.Write(ctx, head, m, snap)
	}
	if err != nil {
		// No half-written session left to trip the next start.
		if _, derr := st.Drop(context.WithoutCancel(ctx), req.Namespace); derr != nil {
			d.log.Warn("session start: drop the half-written session", "namespace", req.Namespace, "err", derr)
		}
		return daemon.SessionInfo{}, fmt.Errorf("start session %q in %s: %w", req.Name, req.Namespace, err)
	}
	d.log.Info("session started", "namespace", req.Namespace, "name", m.Name, "objects", m.Objects, "chunks", len(m.ChunkHashes))
	return sessionInfo(m), nil
}

// SessionDiff compares the namespace with its session's snapshot.
func (d *Daemon) SessionDiff(ctx context.Context, namespace string) (daemon.SessionDiff, error) {
	m, snap, sc, err := d.loadSession(ctx, namespace, access.SessionDiff, "session diff")
	if err != nil {
		return daemon.SessionDiff{}, err
	}
	cur, err := sc.Read(ctx, namespace, m.Include)
	if err != nil {
		return daemon.SessionDiff{}, err
	}
	out := daemon.SessionDiff{Session: sessionInfo(m), Changes: []daemon.SessionChange{}}
	for _, c := range session.Compare(snap.ByRef(), session.Normalized(cur)) {
		out.Changes = append(out.Changes, daemon.SessionChange{Object: c.Ref.String(), Kind: c.Kind, Name: c.Name,
			Change: c.Change, Paths: c.Paths, Diff: c.Text})
	}
	return out, nil
}

// SessionRollback restores the namespace's snapshot: tether's own changes
// made during the session first (as `tether rollback` does), then every
// changed object in Kinds' order, waiting for the workloads to roll out
// before deleting what the session created, and verifies the result.
func (d *Daemon) SessionRollback(ctx context.Context, req daemon.SessionRollbackRequest, progress func(string)) (daemon.SessionRollbackResult, error) {
	res, err := d.sessionRollback(ctx, req, progress)
	if res.Session.Name != "" {
		// The session's log keeps the result for its report, refusals too.
		ev := daemon.SessionEvent{Kind: daemon.EventRollback, At: time.Now().UTC(), By: d.owner(), Rollback: &res}
		if err != nil {
			ev.Error = err.Error()
		}
		if lerr := (session.Store{CS: d.cs}).Append(context.WithoutCancel(ctx), req.Namespace, ev); lerr != nil {
			d.log.Warn("session rollback: not logged with the session", "namespace", req.Namespace, "err", lerr)
		}
	}
	return res, err
}

func (d *Daemon) sessionRollback(ctx context.Context, req daemon.SessionRollbackRequest, progress func(string)) (daemon.SessionRollbackResult, error) {
	m, snap, sc, err := d.loadSession(ctx, req.Namespace, access.SessionRollback, "session rollback")
	if err != nil {
		return daemon.SessionRollbackResult{}, err
	}
	res := daemon.SessionRollbackResult{Session: sessionInfo(m), Steps: []daemon.SessionStep{}}
	want := snap.ByRef()
	cur, err := sc.Read(ctx, req.Namespace, m.Include)
	if err != nil {
		return res, err
	}
	// Refuse before changing anything.
	if refused := session.Refused(session.Plan(want, cur, req.Force)); len(refused) > 0 {
		var lines []string
		for _, s := range refused {
			lines = append(lines, fmt.Sprintf("  %s: %s", s.Ref, s.Reason))
		}
		return res, errdefs.FailedCheck("session %q in %s: %d object(s) cannot be restored in place; nothing was changed:\n%s\n"+
			"`tether session rollback --force -n %s` deletes and recreates them", m.Name, req.Namespace, len(refused), strings.Join(lines, "\n"), req.Namespace)
	}

	// tether's own intercepts and recordings begun during the session.
	entries, err := journal.Store{CS: d.cs}.List(ctx, req.Namespace)
	if err != nil {
		return res, err
	}
	for _, e := range entries {
		if e.CreatedAt.Before(m.Since) {
			continue // there before the session: part of its snapshot
		}
		progress("roll back tether's " + e.Workload.String() + " (begun during the session)")
		results, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: req.Namespace, Workload: e.Workload.String(), Force: req.Force})
		res.Tether = append(res.Tether, results...)
		if err != nil {
			return res, fmt.Errorf("roll back tether's changes to %s: %w", e.Workload, err)
		}
		for _, r := range results {
			if r.Error != "" {
				return res, errdefs.FailedCheck("tether's rollback of %s did not finish: %s", r.Workload, r.Error)
			}
		}
	}
	if len(res.Tether) > 0 {
		if cur, err = sc.Read(ctx, req.Namespace, m.Include); err != nil {
			return res, err
		}
	}

	plan := session.Plan(want, cur, req.Force)
	var restore, remove []session.Step
	for _, s := range plan {
		if s.Action == session.ActDelete {
			remove = append(remove, s)
		} else {
			restore = append(restore, s)
		}
	}
	if len(plan) == 0 {
		progress("nothing changed since the session started")
	}
	done, err := sc.Apply(ctx, req.Namespace, restore, want, cur, progress)
	res.Steps = append(res.Steps, steps(done)...)
	if err != nil {
		return res, err
	}
	var workloads []session.Ref
	for _, o := range snap.Objects {
		workloads = append(workloads, o.Ref)
	}
	timeout := defaultRolloutTimeout
	if req.RolloutTimeout > 0 {
		timeout = time.Duration(req.RolloutTimeout) * time.Second
	}
	if err := sc.WaitRollouts(ctx, req.Namespace, workloads, timeout, progress); err != nil {
		return res, err
	}
	done, err = sc.Apply(ctx, req.Namespace, remove, want, cur, progress)
	res.Steps = append(res.Steps, steps(done)...)
	if err != nil {
		return res, err
	}
	progress("verify every object against the snapshot")
	left, err := sc.Verify(ctx, req.Namespace, m.Include, want)
	if err != nil {
		return res, err
	}
	if len(left) > 0 {
		var lines []string
		for _, c := range left {
			lines = append(lines, fmt.Sprintf("  %s %s %s", c.Change, c.Ref, strings.Join(c.Paths, ", ")))
		}
		return res, errdefs.FailedCheck("session %q in %s: after the rollback these still differ from the snapshot "+
			"(changed meanwhile by someone else or a controller?):\n%s\nrun the rollback again", m.Name, req.Namespace, strings.Join(lines, "\n"))
	}
	res.Verified = true
	d.log.Info("session rolled back", "namespace", req.Namespace, "name", m.Name, "steps", len(res.Steps))
	return res, nil
}

// SessionLog appends req.Append to the namespace's session log, when
// given, and returns the log.
func (d *Daemon) SessionLog(ctx context.Context, req daemon.SessionLogRequest) (daemon.SessionLog, error) {
	if err := d.namespaceExists(ctx, req.Namespace); err != nil {
		return daemon.SessionLog{}, err
	}
	st := session.Store{CS: d.cs}
	m, err := st.Head(ctx, req.Namespace)
	if err != nil {
		return daemon.SessionLog{}, noSession(err, req.Namespace)
	}
	if a := req.Append; a != nil {
		if a.Kind != daemon.EventReproduce || a.Reproduce == nil {
			return daemon.SessionLog{}, errdefs.User("a session's log takes reproduce runs from clients, not %q", a.Kind)
		}
		ev := *a
		ev.At, ev.By = time.Now().UTC(), d.owner()
		if err := st.Append(ctx, req.Namespace, ev); err != nil {
			return daemon.SessionLog{}, sessionLogErr(noSession(err, req.Namespace), req.Namespace, "create and update")
		}
	}
	raw, err := st.Log(ctx, req.Namespace)
	if err != nil {
		return daemon.SessionLog{}, sessionLogErr(err, req.Namespace, "get")
	}
	out := daemon.SessionLog{Session: sessionInfo(m), Events: []daemon.SessionEvent{}}
	for _, r := range raw {
		var ev daemon.SessionEvent
		if err := json.Unmarshal(r, &ev); err != nil {
			d.log.Warn("session log: an event that does not decode", "namespace", req.Namespace, "err", err)
			continue
		}
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// sessionLogErr says which right a refusal of the session's log lacks.
func sessionLogErr(err error, namespace, verbs string) error {
	if apierrors.IsForbidden(err) {
		return errdefs.User("you may not %s secret/%s in %s, where the session keeps its log: %v; ask for %s",
			verbs, session.LogName, namespace, err, sessionRole)
	}
	return err
}

// SessionEnd drops the namespace's session and keeps the cluster as it is.
func (d *Daemon) SessionEnd(ctx context.Context, namespace string) (daemon.SessionInfo, error) {
	if err := d.namespaceExists(ctx, namespace); err != nil {
		return daemon.SessionInfo{}, err
	}
	st := session.Store{CS: d.cs}
	m, err := st.Head(ctx, namespace)
	if err != nil && !errors.Is(err, errdefs.ErrFailedCheck) {
		return daemon.SessionInfo{}, noSession(err, namespace)
	}
	if err := d.permitted(ctx, access.SessionEnd, namespace, sessionObjects(nil, &m), "session end", sessionRole); err != nil {
		return daemon.SessionInfo{}, err
	}
	if _, err := st.Drop(ctx, namespace); err != nil {
		return daemon.SessionInfo{}, err
	}
	d.log.Info("session ended", "namespace", namespace, "name", m.Name)
	return sessionInfo(m), nil
}

// loadSession reads and checks the namespace's session after the checks
// of feature f.
func (d *Daemon) loadSession(ctx context.Context, namespace string, f access.Feature, what string) (session.Meta, *session.Snapshot, session.Client, error) {
	if err := d.namespaceExists(ctx, namespace); err != nil {
		return session.Meta{}, nil, session.Client{}, err
	}
	st := session.Store{CS: d.cs}
	m, err := st.Head(ctx, namespace)
	if err != nil {
		return m, nil, session.Client{}, noSession(err, namespace)
	}
	if err := d.permitted(ctx, f, namespace, sessionObjects(m.Include, &m), what, sessionRole); err != nil {
		return m, nil, session.Client{}, err
	}
	m, snap, err := st.Load(ctx, namespace)
	if err != nil {
		return m, nil, session.Client{}, err
	}
	sc, err := d.sessionClient()
	return m, snap, sc, err
}

func noSession(err error, namespace string) error {
	if errors.Is(err, session.ErrNoSession) {
		// The reason lets a client tell "no session" (daemon.ErrNoSession).
		return errdefs.New(errdefs.ErrUser, daemon.NoSessionReason,
			fmt.Sprintf("namespace %s has no session; `tether session start -n %s` starts one", namespace, namespace))
	}
	return err
}

// namespaceExists refuses a namespace that does not exist or is being
// deleted; a user who may not read namespaces passes (the next call says).
func (d *Daemon) namespaceExists(ctx context.Context, namespace string) error {
	if namespace == "" {
		return errdefs.User("name the namespace with -n NAMESPACE")
	}
	ns, err := d.cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return errdefs.User("namespace %q does not exist; `kubectl get namespaces` lists them", namespace)
	case err != nil:
		return nil
	case ns.Status.Phase == corev1.NamespaceTerminating:
		return errdefs.User("namespace %s is being deleted: nothing in it can be kept or restored (its session goes with it)", namespace)
	}
	return nil
}

// sessionObjects names what a session's checks are about.
func sessionObjects(include []session.Ref, m *session.Meta) access.Objects {
	var o access.Objects
	for _, r := range include {
		k, _ := session.KindOf(r.Kind)
		o.Include = append(o.Include, access.SessionObject{Group: k.GVR.Group, Resource: k.GVR.Resource, Name: r.Name})
	}
	if m != nil {
		for i := range m.ChunkHashes {
			o.SessionChunks = append(o.SessionChunks, session.ChunkName(i))
		}
	}
	return o
}

func sessionInfo(m session.Meta) daemon.SessionInfo {
	i := daemon.SessionInfo{Name: m.Name, Namespace: m.Namespace, Since: m.Since, By: m.By, Objects: m.Objects, Hash: m.Hash}
	for _, r := range m.Include {
		i.Include = append(i.Include, r.String())
	}
	return i
}

func steps(done []session.Done) []daemon.SessionStep {
	var out []daemon.SessionStep
	for _, s := range done {
		out = append(out, daemon.SessionStep{Object: s.Ref.String(), Action: s.Action, Reason: s.Reason, Note: s.Note})
	}
	return out
}

// sessions lists the sessions of every namespace the user may list
// Secrets in; none without that permission.
func (d *Daemon) sessions(ctx context.Context) []daemon.SessionInfo {
	metas, err := session.Store{CS: d.cs}.List(ctx, "")
	if err != nil {
		d.log.Debug("status: no sessions listed", "err", err)
		return nil
	}
	var out []daemon.SessionInfo
	for _, m := range metas {
		out = append(out, sessionInfo(m))
	}
	return out
}
