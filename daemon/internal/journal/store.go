package journal

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Store keeps journals as ConfigMaps.
type Store struct {
	CS kubernetes.Interface
}

// Load returns w's journal, or nil when there is none.
func (s Store) Load(ctx context.Context, w Workload) (*Entry, error) {
	cm, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Get(ctx, w.ConfigMapName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal of %s: %w", w, err)
	}
	return FromConfigMap(cm)
}

// Begin returns w's journal, creating it with original as the template to
// restore when there is none yet. An existing journal keeps the original it
// recorded first: a second change to the same workload still rolls back to
// the state before tether touched it.
func (s Store) Begin(ctx context.Context, e *Entry) (*Entry, error) {
	if cur, err := s.Load(ctx, e.Workload); err != nil || cur != nil {
		return cur, err
	}
	cm, err := e.ToConfigMap()
	if err != nil {
		return nil, err
	}
	_, err = s.CS.CoreV1().ConfigMaps(e.Workload.Namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "tether"})
	if apierrors.IsAlreadyExists(err) {
		return s.Load(ctx, e.Workload) // another tether got there first
	}
	if err != nil {
		return nil, fmt.Errorf("write journal of %s: %w", e.Workload, err)
	}
	return e, nil
}

// Save writes e over its journal.
func (s Store) Save(ctx context.Context, e *Entry) error {
	want, err := e.ToConfigMap()
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := s.CS.CoreV1().ConfigMaps(e.Workload.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("update journal of %s: %w", e.Workload, err)
		}
		cm.Data = want.Data
		cm.Labels = want.Labels
		_, err = s.CS.CoreV1().ConfigMaps(e.Workload.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
}

// Delete removes w's journal; a missing one is not an error.
func (s Store) Delete(ctx context.Context, w Workload) error {
	err := s.CS.CoreV1().ConfigMaps(w.Namespace).Delete(ctx, w.ConfigMapName(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete journal of %s: %w", w, err)
	}
	return nil
}

// List returns the journals in namespace ("" for every namespace the user
// may list), sorted by namespace and workload.
func (s Store) List(ctx context.Context, namespace string) ([]*Entry, error) {
	l, err := s.CS.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	out := make([]*Entry, 0, len(l.Items))
	for i := range l.Items {
		e, err := FromConfigMap(&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Workload, out[j].Workload
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.String() < b.String()
	})
	return out, nil
}
