// Package rollback restores what tether changed, from the journal in the
// cluster: the workload's pod template and the Services' ports as they were
// before tether touched them (or the workload deleted, for the gateway
// tether created), then the token Secret and the journal itself removed.
//
// It trusts the journal only once its MAC checks (journal.Store.Load), and
// restores each object on its own merits: an object is restored only if it
// is still exactly what tether made it (unless forced), with the update
// conditional on the version checked, so a change made meanwhile is never
// undone. A Secret is deleted only if it is the one tether created (its
// name, label and journaled UID). Every step checks before it acts, so a
// rollback interrupted halfway can be run again and finishes the job.
package rollback

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// ErrChangedSince means someone changed the object after tether did; the
// rollback refuses unless forced, to not undo their change.
var ErrChangedSince = errdefs.New(errdefs.ErrFailedCheck, "CHANGED_SINCE", "changed since tether changed it")

// Actions of a Step.
const (
	Restored  = "restored"  // put back as journaled
	Unchanged = "unchanged" // already as journaled
	Deleted   = "deleted"
	Absent    = "absent"  // the object no longer exists
	Refused   = "refused" // left as is: see Reason
	Kept      = "kept"    // left as is because of another object: see Reason
)

// Step is one thing a rollback did (or found already done, or refused).
type Step struct {
	Object string `json:"object"`
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Restore rolls w back. With force it restores even objects someone changed
// since tether did; it never deletes an object that is not tether's. When
// some object is refused, the others are still restored, the journal stays
// for a later run, and the error lists each refusal with its reason.
func Restore(ctx context.Context, cs kubernetes.Interface, w journal.Workload, force bool) ([]Step, error) {
	store := journal.Store{CS: cs}
	e, err := store.Load(ctx, w)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, errdefs.NotFound("no journal for %s in namespace %s: tether has nothing to roll back there", w, w.Namespace)
	}
	var steps []Step
	if e.Pin != nil {
		// First, so that the Service selects every pod of the workload
		// again while the template goes back.
		pin, err := restorePin(ctx, cs, w, e.Pin, force)
		steps = append(steps, pin...)
		if err != nil {
			return steps, err
		}
	}
	restore := restoreTemplate
	switch {
	case e.Gateway:
		restore = deleteGateway
	case e.NoRestart:
		restore = keepTemplate
	}
	tmpl, err := restore(ctx, cs, e, force)
	if err != nil {
		return steps, err
	}
	steps = append(steps, tmpl)
	tmplAt := len(steps) - 1

	names := make([]string, 0, len(e.Services))
	for name := range e.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		step, err := restoreService(ctx, cs, w.Namespace, name, e.Services[name], force)
		if err != nil {
			return steps, err
		}
		steps = append(steps, step)
	}
	// The marks only once the Services no longer select by them: removed
	// first, they would leave a Service that still does with no endpoint.
	svcRefused := false
	for _, st := range steps[tmplAt+1:] {
		svcRefused = svcRefused || st.Action == Refused
	}
	marks, err := restoreMarks(ctx, cs, w.Namespace, e.Marks, svcRefused, force)
	steps = append(steps, marks...)
	if err != nil {
		return steps, err
	}

	if e.Secret != "" {
		step := Step{Object: "secret/" + e.Secret, Action: Kept, Reason: "the pod template still mounts it"}
		if tmpl.Action != Refused {
			if step, err = deleteSecret(ctx, cs, e); err != nil {
				return steps, err
			}
		}
		steps = append(steps, step)
	}

	var refused []string
	for _, s := range steps {
		if s.Action == Refused {
			refused = append(refused, s.Object)
		}
	}
	jstep := Step{Object: "configmap/" + w.ConfigMapName(), Action: Deleted}
	if len(refused) > 0 {
		jstep.Action, jstep.Reason = Kept, strings.Join(refused, ", ")+" not restored yet"
		if len(refused) == 1 {
			jstep.Reason = refused[0] + " is not restored yet"
		}
		steps = append(steps, jstep)
		var why []string
		for _, s := range steps {
			if s.Action == Refused {
				why = append(why, s.Object+": "+s.Reason)
			}
		}
		return steps, errdefs.Withf(ErrChangedSince, "%s in namespace %s is partly rolled back; refused: %s",
			w, w.Namespace, strings.Join(why, "; "))
	}
	if err := store.Delete(ctx, e); err != nil {
		return steps, err
	}
	return append(steps, jstep), nil
}

// restoreTemplate puts back the journaled pod template if the workload's
// template is still the one tether applied (or force).
func restoreTemplate(ctx context.Context, cs kubernetes.Interface, e *journal.Entry, force bool) (Step, error) {
	w := e.Workload
	wc := workload.Client{CS: cs}
	step := Step{Object: w.String(), Action: Restored}
	cur, err := wc.Template(ctx, w)
	switch {
	case apierrors.IsNotFound(err):
		step.Action = Absent
		return step, nil
	case err != nil:
		return step, err
	case equality.Semantic.DeepEqual(*cur, e.Template):
		step.Action = Unchanged
		return step, nil
	}
	if !force {
		if e.AppliedTemplateHash == "" {
			step.Action, step.Reason = Refused, "it differs from the journaled original and tether has no record of what it applied "+
				"(a change interrupted before its journal entry); rerun with --force to restore the template tether journaled anyway"
			return step, nil
		}
		if journal.Hash(cur) != e.AppliedTemplateHash {
			step.Action, step.Reason = Refused, "its pod template changed since tether changed it (someone edited it or rolled it out); "+
				"rerun with --force to restore the template tether journaled anyway"
			return step, nil
		}
	}
	if _, err := wc.SetTemplate(ctx, w, *cur, e.Template); err != nil {
		if errors.Is(err, workload.ErrTemplateChanged) {
			step.Action, step.Reason = Refused, "its pod template changed while rolling back; run the rollback again"
			return step, nil
		}
		return step, err
	}
	return step, nil
}

// keepTemplate is the template step of a --no-restart journal: tether
// changed no template.
func keepTemplate(_ context.Context, _ kubernetes.Interface, e *journal.Entry, _ bool) (Step, error) {
	return Step{Object: e.Workload.String(), Action: Unchanged, Reason: "an intercept --no-restart changes no pod template"}, nil
}

// restoreService puts back a Service's journaled ports (and selector, when
// tether changed it) if they are still the ones tether set (or force),
// conditional on the version read.
func restoreService(ctx context.Context, cs kubernetes.Interface, ns, name string, se journal.ServiceEntry, force bool) (Step, error) {
	step := Step{Object: "service/" + name}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		step.Action, step.Reason = Restored, ""
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			step.Action = Absent
			return nil
		}
		if err != nil {
			return err
		}
		portsOK := equality.Semantic.DeepEqual(svc.Spec.Ports, se.Ports)
		selOK := se.Selector == nil || equality.Semantic.DeepEqual(svc.Spec.Selector, se.Selector)
		_, bumped := svc.Annotations[journal.AnnotationBack]
		if portsOK && selOK && !bumped {
			step.Action = Unchanged
			return nil
		}
		if h := journal.Hash(svc.Spec.Ports); !force && !portsOK && (se.AppliedPortsHash == "" || h != se.AppliedPortsHash) &&
			(se.AsidePortsHash == "" || h != se.AsidePortsHash) {
			step.Action, step.Reason = Refused, "its ports changed since tether changed them; rerun with --force to restore them anyway"
			return nil
		}
		if !force && !selOK && (se.AppliedSelectorHash == "" || journal.Hash(svc.Spec.Selector) != se.AppliedSelectorHash) {
			step.Action, step.Reason = Refused, "its selector changed since tether changed it; rerun with --force to restore it anyway"
			return nil
		}
		svc.Spec.Ports = append([]corev1.ServicePort(nil), se.Ports...)
		if se.Selector != nil {
			svc.Spec.Selector = maps.Clone(se.Selector)
		}
		delete(svc.Annotations, journal.AnnotationBack)
		_, err = cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	if err != nil {
		return step, fmt.Errorf("restore service %s: %w", name, err)
	}
	return step, nil
}

// deleteSecret deletes the agent's token Secret if it is tether's: the
// name tether gives it, tether's label, and the UID tether journaled when
// it created it, or, when tether died before journaling that UID, the
// nonce it journaled before creating it.
func deleteSecret(ctx context.Context, cs kubernetes.Interface, e *journal.Entry) (Step, error) {
	w := e.Workload
	step := Step{Object: "secret/" + e.Secret, Action: Deleted}
	if e.Secret != w.TokenSecretName() {
		step.Action, step.Reason = Refused, "tether names its secret "+w.TokenSecretName()+"; it deletes no other"
		return step, nil
	}
	s, err := cs.CoreV1().Secrets(w.Namespace).Get(ctx, e.Secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		step.Action = Absent
		return step, nil
	case err != nil:
		return step, fmt.Errorf("read secret %s: %w", e.Secret, err)
	case !e.MadeSecret(s):
		step.Action, step.Reason = Kept, "not the secret tether created (label or UID differ); delete it yourself if it is a leftover"
		return step, nil
	}
	uid := s.UID
	err = cs.CoreV1().Secrets(w.Namespace).Delete(ctx, e.Secret, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case apierrors.IsNotFound(err):
		step.Action = Absent
	case apierrors.IsConflict(err):
		step.Action, step.Reason = Kept, "replaced meanwhile by another secret of that name"
	case err != nil:
		return step, fmt.Errorf("delete secret %s: %w", e.Secret, err)
	}
	return step, nil
}

// deleteGateway deletes the gateway Deployment tether created, if it is
// that one: tether's label and the UID journaled when it was created. A
// gateway that someone changed since is deleted all the same unless its
// UID differs: nothing but tether's gateway runs in it.
func deleteGateway(ctx context.Context, cs kubernetes.Interface, e *journal.Entry, _ bool) (Step, error) {
	w := e.Workload
	step := Step{Object: w.String(), Action: Deleted}
	d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		step.Action = Absent
		return step, nil
	case err != nil:
		return step, fmt.Errorf("read %s: %w", w, err)
	case d.Labels[journal.LabelGateway] != "true" || e.GatewayUID == "" || d.UID != e.GatewayUID:
		step.Action, step.Reason = Refused, "not the gateway tether created (label or UID differ); tether deletes no other workload"
		return step, nil
	}
	uid := d.UID
	policy := metav1.DeletePropagationBackground
	err = cs.AppsV1().Deployments(w.Namespace).Delete(ctx, w.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
	switch {
	case apierrors.IsNotFound(err):
		step.Action = Absent
	case err != nil:
		return step, fmt.Errorf("delete %s: %w", w, err)
	}
	return step, nil
}
