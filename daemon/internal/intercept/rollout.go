package intercept

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// ErrAgentFailed means the agent container cannot start in the workload's
// pods; the message has the kubelet's reason.
var ErrAgentFailed = errors.New("the agent cannot start")

// agentFailureReasons are the waiting reasons that will not fix themselves.
var agentFailureReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "ErrImageNeverPull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "CrashLoopBackOff": true, "RunContainerError": true,
}

// waitRollout waits until every replica of w runs a ready agent, reporting
// progress, and fails fast when the agent container cannot start.
func waitRollout(ctx context.Context, cs kubernetes.Interface, w journal.Workload, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wc := workload.Client{CS: cs}
	sel, err := wc.Selector(ctx, w)
	if err != nil {
		return err
	}
	start := time.Now()
	last := time.Time{}
	for {
		want, done, err := rolloutDone(ctx, cs, w)
		if err != nil {
			return err
		}
		pods, err := cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			ok, reason := agentState(&p)
			if reason != "" {
				return errdefs.Mark(errdefs.ErrUser, fmt.Errorf("%w in pod %s: %s", ErrAgentFailed, p.Name, reason))
			}
			if ok {
				ready++
			}
		}
		if done && ready >= want {
			return nil
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for %d/%d pods of %s to run the agent, %s", max(want-ready, 0), want, w, time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: pods not running the agent after %s: %w", w, timeout, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// rolloutDone reports the desired replicas and whether the controller has
// finished replacing pods with the current template.
func rolloutDone(ctx context.Context, cs kubernetes.Interface, w journal.Workload) (int, bool, error) {
	switch w.Kind {
	case workload.Deployment:
		d, err := cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return 0, false, err
		}
		return replicas(d.Spec.Replicas), deploymentDone(d), nil
	case workload.StatefulSet:
		s, err := cs.AppsV1().StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return 0, false, err
		}
		want := replicas(s.Spec.Replicas)
		done := s.Status.ObservedGeneration >= s.Generation && s.Status.UpdatedReplicas == int32(want) &&
			s.Status.ReadyReplicas == int32(want) && s.Status.CurrentRevision == s.Status.UpdateRevision
		return want, done, nil
	}
	return 0, false, fmt.Errorf("unsupported workload kind %q", w.Kind)
}

func deploymentDone(d *appsv1.Deployment) bool {
	want := int32(replicas(d.Spec.Replicas))
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

func replicas(r *int32) int {
	if r == nil {
		return 1
	}
	return int(*r)
}

// agentState reports whether p's agent container is ready, or why it will
// not start.
func agentState(p *corev1.Pod) (ready bool, failure string) {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name != inject.AgentContainer {
			continue
		}
		if w := c.State.Waiting; w != nil && agentFailureReasons[w.Reason] {
			return false, fmt.Sprintf("%s: %s", w.Reason, w.Message)
		}
		return c.Ready && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil, ""
	}
	return false, ""
}
