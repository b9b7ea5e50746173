package rollback

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"
)

// EphemeralNote is why rollback leaves the agents of an intercept
// --no-restart in their pods.
const EphemeralNote = "Kubernetes never removes an ephemeral container: each pod keeps its agent listed " +
	"(idle, no traffic is sent to it, or terminated) until the pod is replaced"

// restoreMarks sets each marked pod's label back to what it was, in the
// pod tether marked (its UID), if it still has tether's value (or force),
// conditional on the version read. keep leaves them all (a Service that
// still selects by them was not restored).
func restoreMarks(ctx context.Context, cs kubernetes.Interface, ns string, marks map[string]journal.Mark, keep, force bool) ([]Step, error) {
	if len(marks) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(marks))
	for name := range marks {
		names = append(names, name)
	}
	sort.Strings(names)
	var steps []Step
	for _, name := range names {
		m := marks[name]
		step := Step{Object: "pod/" + name + " label " + m.Label}
		if keep {
			step.Action, step.Reason = Kept, "a Service still selects by it"
			steps = append(steps, step)
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			step.Action, step.Reason = Restored, ""
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && p.UID != m.UID) {
				step.Action = Absent // the pod tether marked is gone
				return nil
			}
			if err != nil {
				return err
			}
			cur, has := p.Labels[m.Label]
			switch {
			case m.Previous == nil && !has, m.Previous != nil && has && cur == *m.Previous:
				step.Action = Unchanged
				return nil
			case (!has || cur != m.Value) && !force:
				step.Action, step.Reason = Refused, "its label changed since tether set it; rerun with --force to restore it anyway"
				return nil
			}
			if m.Previous == nil {
				delete(p.Labels, m.Label)
			} else {
				if p.Labels == nil {
					p.Labels = map[string]string{}
				}
				p.Labels[m.Label] = *m.Previous
			}
			_, err = cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{FieldManager: "tether"})
			return err
		})
		if err != nil {
			return steps, fmt.Errorf("restore the label of pod %s: %w", name, err)
		}
		steps = append(steps, step)
	}
	return append(steps, Step{Object: "agents in pod/" + strings.Join(names, ", pod/"), Action: Kept, Reason: EphemeralNote}), nil
}
