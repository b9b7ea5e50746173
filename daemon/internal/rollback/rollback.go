// Package rollback restores what tether changed, from the journal in the
// cluster: the workload's pod template and the Services' ports as they were
// before tether touched them, then the token Secret and the journal itself
// removed. Every step checks before it acts, so a rollback interrupted
// halfway can be run again and finishes the job.
package rollback

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
)

// ErrChangedSince means someone changed the object after tether did; the
// rollback refuses unless forced, to not undo their change.
var ErrChangedSince = errors.New("changed since tether changed it")

// Step is one thing a rollback did (or found already done).
type Step struct {
	Object string `json:"object"`
	Action string `json:"action"` // restored, unchanged, deleted, absent
}

// Restore rolls w back. With force it restores even objects someone changed
// since tether did.
func Restore(ctx context.Context, cs kubernetes.Interface, w journal.Workload, force bool) ([]Step, error) {
	store := journal.Store{CS: cs}
	e, err := store.Load(ctx, w)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("no journal for %s in namespace %s: tether has nothing to roll back there", w, w.Namespace)
	}
	var steps []Step
	wc := workload.Client{CS: cs}

	cur, err := wc.Template(ctx, w)
	switch {
	case apierrors.IsNotFound(err):
		steps = append(steps, Step{w.String(), "absent"})
	case err != nil:
		return steps, err
	case equality.Semantic.DeepEqual(*cur, e.Template):
		steps = append(steps, Step{w.String(), "unchanged"})
	default:
		if !force && e.AppliedTemplateHash != "" && journal.Hash(cur) != e.AppliedTemplateHash {
			return steps, fmt.Errorf("%s in namespace %s: its pod template %w (someone edited it or rolled it out); "+
				"rerun with --force to restore the template tether journaled anyway", w, w.Namespace, ErrChangedSince)
		}
		if _, err := wc.SetTemplate(ctx, w, e.Template); err != nil {
			return steps, err
		}
		steps = append(steps, Step{w.String(), "restored"})
	}

	for name, se := range e.Services {
		step, err := restoreService(ctx, cs, w.Namespace, name, se, force)
		if err != nil {
			return steps, err
		}
		steps = append(steps, step)
	}

	if e.Secret != "" {
		err := cs.CoreV1().Secrets(w.Namespace).Delete(ctx, e.Secret, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
			steps = append(steps, Step{"secret/" + e.Secret, "absent"})
		case err != nil:
			return steps, fmt.Errorf("delete secret %s: %w", e.Secret, err)
		default:
			steps = append(steps, Step{"secret/" + e.Secret, "deleted"})
		}
	}
	if err := store.Delete(ctx, w); err != nil {
		return steps, err
	}
	steps = append(steps, Step{"configmap/" + w.ConfigMapName(), "deleted"})
	return steps, nil
}

func restoreService(ctx context.Context, cs kubernetes.Interface, ns, name string, se journal.ServiceEntry, force bool) (Step, error) {
	obj := "service/" + name
	step := Step{obj, "restored"}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			step.Action = "absent"
			return nil
		}
		if err != nil {
			return err
		}
		if equality.Semantic.DeepEqual(svc.Spec.Ports, se.Ports) {
			step.Action = "unchanged"
			return nil
		}
		if !force && se.AppliedPortsHash != "" && journal.Hash(svc.Spec.Ports) != se.AppliedPortsHash {
			return fmt.Errorf("%s in namespace %s: its ports %w; rerun with --force to restore them anyway", obj, ns, ErrChangedSince)
		}
		svc.Spec.Ports = append([]corev1.ServicePort(nil), se.Ports...)
		_, err = cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	return step, err
}
