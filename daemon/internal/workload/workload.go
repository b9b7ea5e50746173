// Package workload finds the Deployment or StatefulSet a user named and
// reads and writes its pod template.
package workload

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Kinds tether changes.
const (
	Deployment  = "Deployment"
	StatefulSet = "StatefulSet"
)

// ErrNotFound and ErrAmbiguous describe a reference that names no single
// workload; the messages list what exists.
var (
	ErrNotFound  = errdefs.New(errdefs.ErrNotFound, "WORKLOAD_NOT_FOUND", "workload not found")
	ErrAmbiguous = errdefs.New(errdefs.ErrUser, "WORKLOAD_AMBIGUOUS", "workload name is ambiguous")
	ErrBadRef    = errdefs.New(errdefs.ErrUser, "BAD_WORKLOAD_REF", "bad workload reference")
)

// ParseRef splits "deploy/orders", "sts/db" or "orders" into kind and name;
// kind is empty for a bare name.
func ParseRef(ref string) (kind, name string, err error) {
	k, n, ok := strings.Cut(ref, "/")
	if !ok {
		k, n = "", ref
	}
	switch strings.ToLower(k) {
	case "":
	case "deploy", "deployment", "deployments", "deployment.apps", "deployments.apps":
		k = Deployment
	case "sts", "statefulset", "statefulsets", "statefulset.apps", "statefulsets.apps":
		k = StatefulSet
	default:
		return "", "", errdefs.Withf(ErrBadRef, "%q: tether intercepts deployments and statefulsets; write deploy/NAME or sts/NAME", ref)
	}
	if n == "" || strings.Contains(n, "/") {
		return "", "", errdefs.Withf(ErrBadRef, "%q: write deploy/NAME, sts/NAME or just NAME", ref)
	}
	return k, n, nil
}

// Client reads and writes workloads.
type Client struct {
	CS kubernetes.Interface
}

// Resolve finds the workload ref names in namespace.
func (c Client) Resolve(ctx context.Context, namespace, ref string) (journal.Workload, error) {
	kind, name, err := ParseRef(ref)
	if err != nil {
		return journal.Workload{}, err
	}
	if _, err := c.CS.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return journal.Workload{}, errdefs.Withf(ErrNotFound, "namespace %q does not exist (choose one with -n)", namespace)
	}
	var found []journal.Workload
	for _, k := range []string{Deployment, StatefulSet} {
		if kind != "" && kind != k {
			continue
		}
		w := journal.Workload{Kind: k, Namespace: namespace, Name: name}
		_, err := c.Template(ctx, w)
		switch {
		case err == nil:
			found = append(found, w)
		case !apierrors.IsNotFound(err):
			return journal.Workload{}, fmt.Errorf("look up %s: %w", w, err)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return journal.Workload{}, errdefs.Withf(ErrNotFound, "no %s named %q in namespace %s; %s", kindWords(kind), name, namespace, c.existing(ctx, namespace, kind))
	default:
		return journal.Workload{}, errdefs.Withf(ErrAmbiguous, "both deploy/%s and sts/%s exist in namespace %s; say which", name, name, namespace)
	}
}

func kindWords(kind string) string {
	switch kind {
	case Deployment:
		return "deployment"
	case StatefulSet:
		return "statefulset"
	default:
		return "deployment or statefulset"
	}
}

// existing lists the workloads in namespace, for error messages.
func (c Client) existing(ctx context.Context, namespace, kind string) string {
	var names []string
	if kind != StatefulSet {
		if l, err := c.CS.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, d := range l.Items {
				names = append(names, "deploy/"+d.Name)
			}
		}
	}
	if kind != Deployment {
		if l, err := c.CS.AppsV1().StatefulSets(namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, s := range l.Items {
				names = append(names, "sts/"+s.Name)
			}
		}
	}
	if len(names) == 0 {
		return "it has none"
	}
	sort.Strings(names)
	return "it has: " + strings.Join(names, ", ")
}

// Template returns w's pod template.
func (c Client) Template(ctx context.Context, w journal.Workload) (*corev1.PodTemplateSpec, error) {
	switch w.Kind {
	case Deployment:
		d, err := c.CS.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &d.Spec.Template, nil
	case StatefulSet:
		s, err := c.CS.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &s.Spec.Template, nil
	default:
		return nil, fmt.Errorf("unsupported workload kind %q", w.Kind)
	}
}

// Selector returns w's pod selector.
func (c Client) Selector(ctx context.Context, w journal.Workload) (labels.Selector, error) {
	var sel *metav1.LabelSelector
	switch w.Kind {
	case Deployment:
		d, err := c.CS.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sel = d.Spec.Selector
	case StatefulSet:
		s, err := c.CS.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		sel = s.Spec.Selector
	}
	return metav1.LabelSelectorAsSelector(sel)
}

// ErrTemplateChanged means w's pod template is no longer the one a change
// was planned from: someone else changed it meanwhile.
var ErrTemplateChanged = errors.New("pod template changed meanwhile")

// SetTemplate replaces w's pod template with to if it still is from, and
// returns the template as the server stored it. The update carries the
// resourceVersion read, so a concurrent write makes it conflict; it then
// reads again and retries while the template still is from, and fails with
// ErrTemplateChanged once it is not.
func (c Client) SetTemplate(ctx context.Context, w journal.Workload, from, to corev1.PodTemplateSpec) (*corev1.PodTemplateSpec, error) {
	return c.setTemplate(ctx, w, from, to, nil, nil)
}

// SetTemplateWith is SetTemplate that also changes a Deployment by edit
// in the same update (one rollout, one request); edit's error ends it.
func (c Client) SetTemplateWith(ctx context.Context, w journal.Workload, from, to corev1.PodTemplateSpec, edit func(*appsv1.Deployment) error) (*corev1.PodTemplateSpec, error) {
	if edit != nil && w.Kind != Deployment {
		return nil, fmt.Errorf("update %s: only a Deployment's other settings change with its template", w)
	}
	return c.setTemplate(ctx, w, from, to, nil, edit)
}

// DryRunTemplate returns the template as the API server would store it
// if SetTemplate(from, to) ran now (its defaults and admission's changes
// applied), changing nothing: what tether journals before it applies to,
// so a daemon killed right after the update leaves a journal that
// recognises the stored template.
func (c Client) DryRunTemplate(ctx context.Context, w journal.Workload, from, to corev1.PodTemplateSpec) (*corev1.PodTemplateSpec, error) {
	return c.setTemplate(ctx, w, from, to, []string{metav1.DryRunAll}, nil)
}

func (c Client) setTemplate(ctx context.Context, w journal.Workload, from, to corev1.PodTemplateSpec, dryRun []string, edit func(*appsv1.Deployment) error) (*corev1.PodTemplateSpec, error) {
	var stored *corev1.PodTemplateSpec
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		switch w.Kind {
		case Deployment:
			d, err := c.CS.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !equality.Semantic.DeepEqual(d.Spec.Template, from) {
				return ErrTemplateChanged
			}
			d.Spec.Template = to
			if edit != nil {
				if err := edit(d); err != nil {
					return err
				}
			}
			d, err = c.CS.AppsV1().Deployments(w.Namespace).Update(ctx, d, metav1.UpdateOptions{FieldManager: "tether", DryRun: dryRun})
			if err != nil {
				return err
			}
			stored = &d.Spec.Template
		case StatefulSet:
			s, err := c.CS.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !equality.Semantic.DeepEqual(s.Spec.Template, from) {
				return ErrTemplateChanged
			}
			s.Spec.Template = to
			s, err = c.CS.AppsV1().StatefulSets(w.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: "tether", DryRun: dryRun})
			if err != nil {
				return err
			}
			stored = &s.Spec.Template
		default:
			return fmt.Errorf("unsupported workload kind %q", w.Kind)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", w, err)
	}
	return stored, nil
}
