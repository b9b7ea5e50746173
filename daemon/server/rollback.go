package server

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/access"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Rollback restores journaled workloads.
func (d *Daemon) Rollback(ctx context.Context, req daemon.RollbackRequest) ([]daemon.RollbackResult, error) {
	// A pinned rollout this daemon still sets back (its intercept returned
	// moments ago) ends first: the rollback then finds no hold.
	d.releases.Wait(ctx, "")
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
