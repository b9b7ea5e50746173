package rollback

import (
	"context"
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"
)

// restorePin undoes what a sidecar intercept that stopped during its
// rollout left (journal.Pin): the Service's selector held to one
// ReplicaSet's pods, and the Deployment's settings that keep the old pods.
// The selector goes first: the Service then selects every pod of the
// workload again before the old ones may go.
func restorePin(ctx context.Context, cs kubernetes.Interface, w journal.Workload, p *journal.Pin, force bool) ([]Step, error) {
	sel := Step{Object: "service/" + p.Service + " selector"}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sel.Action, sel.Reason = Restored, ""
		svc, err := cs.CoreV1().Services(w.Namespace).Get(ctx, p.Service, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			sel.Action = Absent
			return nil
		}
		if err != nil {
			return err
		}
		if equality.Semantic.DeepEqual(svc.Spec.Selector, p.Selector) {
			sel.Action = Unchanged
			return nil
		}
		if _, ok := p.PinnedSelector(svc.Spec.Selector); !ok && !force {
			sel.Action, sel.Reason = Refused, fmt.Sprintf("its selector changed since tether held it to one ReplicaSet's pods by %s; "+
				"rerun with --force to restore it anyway", p.Label)
			return nil
		}
		svc.Spec.Selector = maps.Clone(p.Selector)
		_, err = cs.CoreV1().Services(w.Namespace).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("restore service %s's selector: %w", p.Service, err)
	}

	settings := Step{Object: w.String() + " rollout settings"}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		settings.Action, settings.Reason = Restored, ""
		d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			settings.Action = Absent
			return nil
		}
		if err != nil {
			return err
		}
		cur := journal.SettingsOf(d)
		if equality.Semantic.DeepEqual(cur, p.Rollout) {
			settings.Action = Unchanged
			return nil
		}
		if journal.Hash(cur) != p.AppliedRolloutHash && !force {
			settings.Action, settings.Reason = Refused, "its strategy, minReadySeconds or progressDeadlineSeconds changed since tether set them; "+
				"rerun with --force to restore them anyway"
			return nil
		}
		p.Rollout.Apply(d)
		_, err = cs.AppsV1().Deployments(w.Namespace).Update(ctx, d, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	if err != nil {
		return []Step{sel}, fmt.Errorf("restore %s's rollout settings: %w", w, err)
	}
	return []Step{sel, settings}, nil
}
