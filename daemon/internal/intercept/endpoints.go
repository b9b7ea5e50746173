package intercept

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// waitEndpoints waits until the Service routes only to pods whose agent is
// ready: every ready endpoint of its EndpointSlices is such a pod, and there
// are want of them. Until then some new connections would still reach pods
// without the agent (being replaced) and miss the intercept.
func waitEndpoints(ctx context.Context, cs kubernetes.Interface, ns, svc string, want int, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, last := time.Now(), time.Time{}
	for {
		agentReady, other, err := endpointPods(ctx, cs, ns, svc)
		if err != nil {
			return err
		}
		if other == 0 && agentReady >= want {
			return nil
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for service/%s to route to the agents (%d of %d ready, %d old endpoints), %s",
				svc, agentReady, want, other, time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service/%s still routes to %d pods without the agent after %s", svc, other, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// endpointPods counts the Service's ready endpoints whose pod runs a ready
// agent, and the others.
func endpointPods(ctx context.Context, cs kubernetes.Interface, ns, svc string) (agentReady, other int, err error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, 0, err
	}
	pods := map[string]*corev1.Pod{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			// kube-proxy sends new connections to terminating (serving but
			// not ready) endpoints only when no endpoint is ready: count
			// just the ready ones.
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			p, ok := pods[ep.TargetRef.Name]
			if !ok {
				p, err = cs.CoreV1().Pods(ns).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
				if err != nil {
					other++ // gone, or unreadable: not known to run the agent
					continue
				}
				pods[ep.TargetRef.Name] = p
			}
			if ready, _ := agentState(p); ready {
				agentReady++
			} else {
				other++
			}
		}
	}
	return agentReady, other, nil
}

// ErrSharedService means the Service also sends traffic to pods of another
// workload, which have no agent.
var ErrSharedService = errdefs.New(errdefs.ErrUser, "SERVICE_SELECTS_OTHERS", "the Service also selects pods of another workload")

// checkSelectsOnly refuses a Service that also selects pods the workload
// does not manage (its selector does not match them, or another controller
// owns them: selectors may overlap): those pods get no agent, so kube-proxy would
// send part of the Service's connections to them and an intercept reported
// as running would miss them.
func checkSelectsOnly(ctx context.Context, cs kubernetes.Interface, svc *corev1.Service, w journal.Workload) error {
	var (
		pods    *corev1.PodList
		listErr error
		listing sync.WaitGroup
	)
	listing.Go(func() {
		pods, listErr = cs.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	})
	sel, err := workload.Client{CS: cs}.Selector(ctx, w)
	listing.Wait()
	if err != nil {
		return err
	}
	if listErr != nil {
		return fmt.Errorf("list the pods service/%s selects: %w", svc.Name, listErr)
	}
	var others []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if !sel.Matches(labels.Set(p.Labels)) || !ownedBy(&p, w) {
			name := "pod/" + p.Name
			if len(p.OwnerReferences) > 0 {
				name += " (of " + strings.ToLower(p.OwnerReferences[0].Kind) + "/" + p.OwnerReferences[0].Name + ")"
			}
			others = append(others, name)
		}
	}
	if len(others) == 0 {
		return nil
	}
	sort.Strings(others)
	return errdefs.Withf(ErrSharedService, "service %s also selects %s, which %s does not manage: those pods get no agent, so part of "+
		"the Service's traffic would never reach you. Intercept through a Service whose selector matches only %s's pods (selector %s)",
		svc.Name, strings.Join(others, ", "), w, w, sel)
}

// ownedBy reports whether p's controller is w (a Deployment's pods belong
// to its ReplicaSet NAME-HASH, HASH being their pod-template-hash label); a
// pod without a controller is taken as w's.
func ownedBy(p *corev1.Pod, w journal.Workload) bool {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return true
	}
	switch w.Kind {
	case workload.Deployment:
		return ref.Kind == "ReplicaSet" && ref.Name == w.Name+"-"+p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	case workload.StatefulSet:
		return ref.Kind == "StatefulSet" && ref.Name == w.Name
	}
	return true
}
