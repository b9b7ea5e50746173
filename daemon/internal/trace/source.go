package trace

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// SourcePod finds the pod FROM names: "pod/NAME" or "NAME" is that pod;
// "deploy/NAME" or "sts/NAME" picks one of the workload's ready pods, and
// pickedFrom names the workload.
func SourcePod(ctx context.Context, cs kubernetes.Interface, namespace, from string) (pod *corev1.Pod, pickedFrom string, err error) {
	return PickPod(ctx, cs, namespace, from, PickOptions{BareIsPod: true, Purpose: "trace from"})
}

// PickOptions say how PickPod reads a reference and words its errors.
type PickOptions struct {
	// BareIsPod: "NAME" is a pod (trace); else a workload (run).
	BareIsPod bool
	// Purpose completes "no ready pod to ...", e.g. "run as".
	Purpose string
}

// PickPod finds the pod ref names: "pod/NAME" is that pod, a workload
// reference picks one of its ready pods, the newest (pickedFrom names the
// workload).
func PickPod(ctx context.Context, cs kubernetes.Interface, namespace, from string, o PickOptions) (pod *corev1.Pod, pickedFrom string, err error) {
	kind, name, found := strings.Cut(from, "/")
	if !found && o.BareIsPod {
		kind, name = "pod", from
	}
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		p, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, "", errdefs.User("no pod %q in namespace %s (`kubectl get pods -n %s` lists them; deploy/NAME picks a ready pod of a deployment)", name, namespace, namespace)
		}
		if err != nil {
			return nil, "", fmt.Errorf("read pod %s/%s: %w", namespace, name, err)
		}
		if err := runnable(p, o.Purpose); err != nil {
			return nil, "", err
		}
		return p, "", nil
	}
	w, err := workload.Client{CS: cs}.Resolve(ctx, namespace, from)
	if err != nil {
		return nil, "", err // marked as a user error where it is one
	}
	sel, err := workload.Client{CS: cs}.Selector(ctx, w)
	if err != nil {
		return nil, "", fmt.Errorf("read the selector of %s: %w", from, err)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, "", fmt.Errorf("list the pods of %s: %w", from, err)
	}
	// The newest first, then by name: during a rollout, and in the moment
	// after a first intercept returns while its old pods are let go, a
	// pod of the template that stays.
	sort.Slice(pods.Items, func(i, j int) bool {
		a, b := &pods.Items[i], &pods.Items[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && podReady(p) {
			return p, from, nil
		}
	}
	return nil, "", errdefs.User("%s has no ready pod to %s (%d %s); name one with pod/NAME", from, o.Purpose, len(pods.Items), plural(len(pods.Items), "pod"))
}

// runnable: the inspection agent can only join a pod with a running
// container.
func runnable(p *corev1.Pod, purpose string) error {
	if p.Status.Phase != corev1.PodRunning {
		return errdefs.User("pod %s is %s, not running: there is no network namespace to %s", p.Name, p.Status.Phase, purpose)
	}
	return nil
}
