package intercept

// A sidecar intercept replaces the workload's pods, and the Service then
// follows the rollout: each new pod enters its EndpointSlices (not ready,
// then ready) and each old one leaves (terminating, then gone). kube-proxy
// applies such changes through a token bucket shared by every Service on
// the node (k8s 1.32: a burst of 2, then one a second), so the change that
// takes the last old pod out waits up to a second for its turn, and the
// intercept cannot be ready before it (docs/NOTES.md, session 17).
//
// A pinned rollout keeps the rollout out of the Service's slices and moves
// the Service once: its selector also requires the running pods'
// pod-template-hash; the Deployment starts every new pod at once and keeps
// the old ones (maxSurge 100%, maxUnavailable 0, a minReadySeconds that
// never ends); once every new pod's agent is ready, one update of the
// Service selects the new pods' hash instead (and retargets its port), a
// single slice change that kube-proxy applies at once. Before it returns,
// the intercept sets the Deployment's settings back, which lets the old
// pods go, and marks the journal's Pin as releasing; the daemon sets the
// Service's selector back once they are going, after the return
// (Manager.release). Session 19 did all of it after the return and met
// two races, now closed: a pod picked of the workload could be an old
// one about to go (trace.PickPod now picks the newest), and another
// tether found the hold in the journal and refused (it now waits for a
// releasing Pin to clear: refuseNoRestartJournal).
//
// Both changes are journaled first (journal.Pin). A daemon that dies in
// between leaves a Service that still serves: before the switch the old
// pods, held until a rollback; after it the new pods, whose agents send to
// the app without a tunnel. `tether rollback` restores both.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// pinLabel tells a Deployment's ReplicaSets' pods apart; the controller
// sets it on each.
const pinLabel = appsv1.DefaultDeploymentUniqueLabelKey

// pinMaxReplicas bounds the Deployments a pinned rollout is used for: it
// starts every new pod at once, beside the old ones. Larger ones roll out
// as they are configured to.
const pinMaxReplicas = 10

// pinHold is the minReadySeconds that keeps the old pods until the
// switch: never, in practice, so a daemon that dies before it leaves the
// old pods serving until a rollback rather than a Service that selects
// none.
const pinHold = math.MaxInt32 - 1

// errPinChanged: someone changed the Service's selector or the
// Deployment's settings while the intercept held them.
var errPinChanged = errors.New("changed meanwhile")

// pin is one pinned rollout: the journal's record, the settings tether
// sets, and the old and new pods' hashes.
type pin struct {
	j        journal.Pin
	to       journal.RolloutSettings
	old, new string
	// svc is the Service as tether last stored it, for the switch's
	// update without a read.
	svc *corev1.Service
	// seen are the hashes of the new pods the rollout saw with a ready
	// agent.
	seen map[string]bool
}

// planPin returns the pinned rollout for an intercept that adds the agent
// to w's pods, or nil and why it rolls out as configured instead.
func (m *Manager) planPin(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service) (*pin, string, error) {
	if req.RecordOnly {
		return nil, "recording only (the Service stays at the app)", nil
	}
	if w.Kind != workload.Deployment {
		return nil, "not a Deployment", nil
	}
	d, err := m.CS.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	n := replicas(d.Spec.Replicas)
	switch {
	case d.Spec.Paused:
		return nil, "the Deployment is paused", nil
	case d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType:
		return nil, "its strategy is Recreate", nil
	case d.Spec.MinReadySeconds != 0:
		return nil, "it has a minReadySeconds", nil
	case n == 0 || n > pinMaxReplicas:
		return nil, fmt.Sprintf("%d replicas (pinned for 1 to %d)", n, pinMaxReplicas), nil
	case !deploymentDone(d):
		return nil, "a rollout of it is under way", nil
	case len(svc.Spec.Selector) == 0:
		return nil, "the Service has no selector", nil
	}
	if why := pinRoom(d, n); why != "" {
		return nil, why, nil
	}
	if _, ok := svc.Spec.Selector[pinLabel]; ok {
		return nil, "the Service selects by " + pinLabel, nil
	}
	pods, err := m.CS.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, "", err
	}
	old := ""
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		h := p.Labels[pinLabel]
		if h == "" || old != "" && h != old {
			return nil, "the Service's pods are not all of one ReplicaSet", nil
		}
		old = h
	}
	if old == "" {
		return nil, "no running pod", nil
	}
	to := journal.SettingsOf(d)
	surge, none := intstr.FromString("100%"), intstr.FromInt32(0)
	to.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &none}}
	to.MinReadySeconds = pinHold
	deadline := int32(math.MaxInt32) // must exceed minReadySeconds
	to.ProgressDeadlineSeconds = &deadline
	return &pin{
		j: journal.Pin{Service: svc.Name, Selector: maps.Clone(svc.Spec.Selector), Label: pinLabel,
			Rollout: journal.SettingsOf(d), AppliedRolloutHash: journal.Hash(to)},
		to: to, old: old,
	}, "", nil
}

// pinRoom says why d's pods should not all be started beside the
// running ones, or "". Where room runs out anyway (a quota, the nodes'
// capacity), the rollout falls back to d's own settings (errPinRoom).
func pinRoom(d *appsv1.Deployment, n int) string {
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		if s, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, n, true); err == nil && s == 0 {
			return "its strategy starts no pod beyond its replicas (maxSurge 0)"
		}
	}
	spec := &d.Spec.Template.Spec
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
		return "its pods have a required pod anti-affinity (new pods may have no node beside the old ones)"
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				return fmt.Sprintf("container %s takes host port %d (two pods of it cannot share a node)", c.Name, p.HostPort)
			}
		}
	}
	return ""
}

// pin journals p, with applied as the hash of the template about to be
// applied and ports (when not nil) as the ports the switch sets on svc,
// in one write; then it holds the Service to the old pods. The
// template's update sets the Deployment's settings (p.settings).
func (a *attempt) pin(ctx context.Context, p *pin, applied string, svc *corev1.Service, ports []corev1.ServicePort) error {
	err := a.update(ctx, func(e *journal.Entry) error {
		if e.Pin != nil {
			return pinJournal(a.w, e.Pin.Service)
		}
		j := p.j
		e.Pin = &j
		a.applied(e, applied)
		if ports != nil {
			a.appliedPorts(e, svc, ports)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.pinned = p
	p.svc = svc // as read moments ago
	return a.setSelector(ctx, p, func(sel map[string]string) bool { return equality.Semantic.DeepEqual(sel, p.j.Selector) }, p.old)
}

// agentReady notes the hash of a pod the rollout saw with a ready agent.
func (p *pin) agentReady(pod *corev1.Pod) {
	if h := pod.Labels[pinLabel]; h != "" && h != p.old {
		if p.seen == nil {
			p.seen = map[string]bool{}
		}
		p.seen[h] = true
	}
}

// settings sets the pinned rollout's settings on d, in the update that
// gives it the agent, if they are still the Deployment's own.
func (p *pin) settings(d *appsv1.Deployment) error {
	_, err := applySettings(d, p.j.Rollout, p.to)
	return err
}

// applySettings sets d's rollout settings to to if they are from; it
// reports whether d changed. Settings already at to are left alone, and
// any others are someone else's change, refused.
func applySettings(d *appsv1.Deployment, from, to journal.RolloutSettings) (bool, error) {
	cur := journal.SettingsOf(d)
	if equality.Semantic.DeepEqual(cur, to) {
		return false, nil
	}
	if !equality.Semantic.DeepEqual(cur, from) {
		return false, fmt.Errorf("deployment/%s's rollout settings %w", d.Name, errPinChanged)
	}
	to.Apply(d)
	return true, nil
}

// setSelector sets the pinned Service's selector to the original plus
// pinLabel=hash (the original when hash is empty), if from accepts it as
// it is.
func (a *attempt) setSelector(ctx context.Context, p *pin, from func(map[string]string) bool, hash string) error {
	return p.updateService(ctx, a.m.CS.CoreV1().Services(a.w.Namespace), func(svc *corev1.Service) error {
		if !from(svc.Spec.Selector) {
			return fmt.Errorf("service/%s's selector %w (it is %v)", p.j.Service, errPinChanged, svc.Spec.Selector)
		}
		svc.Spec.Selector = maps.Clone(p.j.Selector)
		if hash != "" {
			svc.Spec.Selector[pinLabel] = hash
		}
		return nil
	})
}

// updateService changes the pinned Service by edit and stores it: first
// from p.svc, the Service as tether last read or stored it, with no read;
// when that is stale (the update conflicts, or edit refuses it), from the
// Service as read now.
func (p *pin) updateService(ctx context.Context, svcs typedcorev1.ServiceInterface, edit func(*corev1.Service) error) error {
	opts := metav1.UpdateOptions{FieldManager: "tether"}
	if p.svc != nil {
		if svc := p.svc.DeepCopy(); edit(svc) == nil {
			stored, err := svcs.Update(ctx, svc, opts)
			if err == nil {
				p.svc = stored
				return nil
			}
			if !apierrors.IsConflict(err) {
				return err
			}
		}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := svcs.Get(ctx, p.j.Service, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := edit(svc); err != nil {
			return err
		}
		stored, err := svcs.Update(ctx, svc, opts)
		if err == nil {
			p.svc = stored
		}
		return err
	})
}

// setSettings sets the Deployment's rollout settings to to if they are
// from (and leaves them if they are to already).
func (a *attempt) setSettings(ctx context.Context, from, to journal.RolloutSettings) error {
	deps := a.m.CS.AppsV1().Deployments(a.w.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(ctx, a.w.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed, err := applySettings(d, from, to)
		if !changed || err != nil {
			return err
		}
		_, err = deps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
}

// switchPin moves the Service from the old pods to the new ones (those
// with a ready agent and another hash) in one update, with its ports
// retargeted at the agent when the plan changes them (journaled by pin).
func (a *attempt) switchPin(ctx context.Context, p *pin, svc *corev1.Service, ports []corev1.ServicePort) error {
	seen := p.seen
	if len(seen) == 0 {
		pods, err := a.m.CS.CoreV1().Pods(a.w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(p.j.Selector).String()})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			if ok, _ := agentState(&pods.Items[i]); ok {
				p.agentReady(&pods.Items[i])
			}
		}
		seen = p.seen
	}
	for h := range seen {
		if p.new != "" && h != p.new {
			return errdefs.Withf(workload.ErrTemplateChanged, "%s: pods of two new templates run the agent (%s and %s): another change rolled out meanwhile", a.w, p.new, h)
		}
		p.new = h
	}
	if p.new == "" {
		return fmt.Errorf("%s: no new pod runs a ready agent", a.w)
	}
	err := p.updateService(ctx, a.m.CS.CoreV1().Services(a.w.Namespace), func(cur *corev1.Service) error {
		if h, ok := p.j.PinnedSelector(cur.Spec.Selector); !ok || h != p.old {
			return fmt.Errorf("service/%s's selector %w (it is %v)", p.j.Service, errPinChanged, cur.Spec.Selector)
		}
		if ports != nil && !equality.Semantic.DeepEqual(cur.Spec.Ports, svc.Spec.Ports) {
			return ErrPortsChanged
		}
		cur.Spec.Selector = maps.Clone(p.j.Selector)
		cur.Spec.Selector[pinLabel] = p.new
		if ports != nil {
			cur.Spec.Ports = ports
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update service %s: %w", p.j.Service, err)
	}
	stored := p.svc
	if ports != nil {
		a.portsFrom, a.portsTo = svc.Spec.Ports, stored.Spec.Ports
		if journal.Hash(stored.Spec.Ports) != journal.Hash(ports) {
			return a.setAppliedPorts(ctx, svc, stored.Spec.Ports)
		}
	}
	return nil
}

// release sets the Deployment's settings back, which lets the old pods
// go, then the Service's selector once they are going, and clears the
// journal's Pin. What it cannot set back stays journaled for a rollback,
// and the error says what.
func (a *attempt) release(ctx context.Context, p *pin, tl *timeline) error {
	done := tl.begin("release: settings", "")
	if err := a.setSettings(ctx, p.to, p.j.Rollout); err != nil {
		return err
	}
	done()
	return a.releaseSelector(ctx, p, tl)
}

// releaseBegin sets the Deployment's settings back and marks the journal's
// Pin as releasing, at once: an intercept that returns then leaves the
// rest to releaseSelector, and another intercept waits for it.
func (a *attempt) releaseBegin(ctx context.Context, p *pin, tl *timeline) error {
	done := tl.begin("release: settings", "")
	defer done()
	var (
		markErr error
		marking sync.WaitGroup
	)
	marking.Go(func() {
		markErr = a.update(ctx, func(e *journal.Entry) error {
			if e.Pin == nil {
				return fmt.Errorf("the journal of %s no longer holds service/%s's pin (a rollback meanwhile?)", a.w, p.j.Service)
			}
			e.Pin.Releasing = true
			return nil
		})
	})
	err := a.setSettings(ctx, p.to, p.j.Rollout)
	marking.Wait()
	return cmp.Or(err, markErr)
}

// releaseSelector waits for the old pods to be going, then sets the
// Service's selector back and clears the journal's Pin.
func (a *attempt) releaseSelector(ctx context.Context, p *pin, tl *timeline) error {
	done := tl.begin("release: old pods going", "")
	// Until the old pods are going, the original selector would send
	// connections to them again.
	sel := labels.SelectorFromSet(p.j.Selector).String() + "," + pinLabel + "=" + p.old
	deadline := time.Now().Add(10 * time.Second)
	for {
		pods, err := a.m.CS.CoreV1().Pods(a.w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		staying := 0
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				staying++
			}
		}
		if staying == 0 {
			// And the controllers' pod cache has them going: the
			// Deployment's status counts them out from the cache the
			// EndpointSlice controller reads the selector's pods from,
			// and a pod it still saw running would enter the Service's
			// slices ready for a moment.
			counted, err := a.oldPodsCounted(ctx)
			if err != nil {
				return err
			}
			if counted {
				break
			}
		}
		if time.Now().After(deadline) {
			if staying == 0 {
				return fmt.Errorf("%s's status still counts the old template's pods 10 s after they began to go", a.w)
			}
			return fmt.Errorf("%d pods of the old template are still running 10 s after %s's settings were set back", staying, a.w)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	done()
	done = tl.begin("release: selector", "")
	err := a.setSelector(ctx, p, func(sel map[string]string) bool {
		h, ok := p.j.PinnedSelector(sel)
		return ok && h == p.new
	}, "")
	if err != nil {
		return err
	}
	done()
	defer tl.begin("release: journal", "")()
	return a.update(ctx, func(e *journal.Entry) error {
		e.Pin = nil
		return nil
	})
}

// oldPodsCounted reports whether the Deployment's status no longer counts
// the old pods (its replicas all updated, for its current generation):
// the ReplicaSet and Deployment controllers have seen them going, in the
// pod cache the EndpointSlice controller shares.
func (a *attempt) oldPodsCounted(ctx context.Context) (bool, error) {
	d, err := a.m.CS.AppsV1().Deployments(a.w.Namespace).Get(ctx, a.w.Name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	want := int32(replicas(d.Spec.Replicas))
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.Replicas == want && st.UpdatedReplicas == want, nil
}

// unpin undoes a pin after a failure: the Service's selector first (it
// then selects the pods of both templates), then the settings, each only
// if it is still what tether set; it returns what it had to leave.
func (a *attempt) unpin(ctx context.Context) []string {
	p := a.pinned
	var left []string
	err := a.setSelector(ctx, p, func(sel map[string]string) bool {
		_, ok := p.j.PinnedSelector(sel)
		return ok || equality.Semantic.DeepEqual(sel, p.j.Selector)
	}, "")
	if err != nil {
		left = append(left, fmt.Sprintf("service/%s's selector (%v)", p.j.Service, err))
	}
	if err := a.setSettings(ctx, p.to, p.j.Rollout); err != nil {
		left = append(left, fmt.Sprintf("%s's rollout settings (%v)", a.w, err))
	}
	if len(left) == 0 {
		if err := a.update(ctx, func(e *journal.Entry) error {
			e.Pin = nil
			return nil
		}); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			left = append(left, fmt.Sprintf("the journal's record of service/%s's hold (%v)", p.j.Service, err))
		}
	}
	return left
}

// pinJournal refuses an intercept of a workload whose journal holds a pin
// from an intercept that stopped during its rollout.
func pinJournal(w journal.Workload, svc string) error {
	return errdefs.FailedCheck("an intercept of %s stopped during its rollout (its daemon was stopped or killed) while it held service/%s "+
		"to one template's pods, and the Deployment keeps its old pods until that is undone: run `tether rollback %s` first", w, svc, w)
}
