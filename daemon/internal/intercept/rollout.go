package intercept

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// ErrAgentFailed means the agent container cannot start in the workload's
// pods; the message has the kubelet's reason.
var ErrAgentFailed = errors.New("the agent cannot start")

// agentFailureReasons are the waiting reasons that will not fix themselves,
// for the agent and for any container of a pod with the agent.
var agentFailureReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "ErrImageNeverPull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "CrashLoopBackOff": true, "RunContainerError": true,
}

// WaitRollout waits until every replica of w runs a ready agent, reporting
// progress, and fails within seconds, with the reason and what to do, when
// the rollout cannot finish (see diagnose). The gateway waits with it too.
func WaitRollout(ctx context.Context, cs kubernetes.Interface, w journal.Workload, timeout time.Duration, progress func(string)) error {
	return newRolloutWaiter(cs).wait(ctx, w, timeout, progress)
}

// newRolloutWaiter polls the workload every 50 ms (one GET: the time from
// the rollout's end to noticing it adds to every first intercept) and
// looks at its pods every 500 ms, and at once when the controller reports
// the rollout done.
func newRolloutWaiter(cs kubernetes.Interface) rolloutWaiter {
	return rolloutWaiter{cs: cs, grace: rolloutGrace, poll: 50 * time.Millisecond, look: 500 * time.Millisecond}
}

// rolloutGrace is how long a condition that can clear by itself (a quota
// full while old pods still hold their share, a pod not yet schedulable)
// must last before the rollout is declared stuck.
const rolloutGrace = 10 * time.Second

type rolloutWaiter struct {
	cs          kubernetes.Interface
	grace, poll time.Duration
	// look is how often the pods are listed (and the rollout diagnosed)
	// while the controller does not report it done; zero: every poll.
	look time.Duration
	// agentReady, when set, is called with each pod seen running a ready
	// agent, at every look (the intercept connects to it meanwhile).
	agentReady func(*corev1.Pod)
	// podStarted, when set, is called with each pod of the rollout that
	// is not going, from the moment it is scheduled.
	podStarted func(*corev1.Pod)
	// pods are the workload's pods as wait last saw them, once it
	// returned nil.
	pods []corev1.Pod
	// pinned, when set, is the old pods' hash in a pinned rollout
	// (pin.go): the controller reports that rollout done only once tether
	// lets the old pods go, so it is done when every replica of another
	// hash is Ready with a ready agent, and the pods are looked at every
	// poll.
	pinned string
}

func (rw rolloutWaiter) wait(ctx context.Context, w journal.Workload, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs := rw.cs
	wc := workload.Client{CS: cs}
	sel, err := wc.Selector(ctx, w)
	if err != nil {
		return err
	}
	start := time.Now()
	last := time.Time{}
	d := diagnosis{cs: cs, w: w, start: start, grace: rw.grace, since: map[string]time.Time{}, pinned: rw.pinned != ""}
	lastReady, shown := 0, ""
	var looked time.Time
	timedOut := func() error {
		why := ""
		if d.pending != "" {
			why = "; last seen: " + d.pending
		}
		return fmt.Errorf("%s: pods not running the agent after %s%s: %w", w, timeout, why, ctx.Err())
	}
	var (
		want     int
		done     bool
		reported time.Time // when want and the diagnosis were last taken
	)
	// A pinned rollout's pods come from a watch and are looked at again
	// as soon as one changes: the switch waits on them, and a list per
	// change would add a round trip to it.
	var pw *podWatch
	if rw.pinned != "" {
		pw = watchPods(ctx, cs, w.Namespace, sel.String())
		defer pw.stop()
	}
	for {
		// A pinned rollout looks at its pods every poll and every change
		// (from the watch; listed when it has ended), and reads the
		// workload and diagnoses it every look.
		again := rw.pinned == "" || time.Since(reported) >= rw.look
		if again {
			if want, done, err = rolloutDone(ctx, cs, w); err != nil {
				return err
			}
			done = done || rw.pinned != ""
			reported = time.Now()
		}
		if !done && time.Since(looked) < rw.look {
			select {
			case <-ctx.Done():
				return timedOut()
			case <-time.After(rw.poll):
			}
			continue
		}
		looked = time.Now()
		var pods []corev1.Pod
		if pw.live() {
			pods = pw.list()
		} else {
			list, err := cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
			if err != nil {
				return err
			}
			pods = list.Items
		}
		ready := 0
		for i := range pods {
			p := &pods[i]
			if p.DeletionTimestamp != nil || rw.pinned != "" && p.Labels[pinLabel] == rw.pinned {
				continue
			}
			if rw.podStarted != nil && p.Spec.NodeName != "" {
				rw.podStarted(p)
			}
			ok, reason := agentState(p)
			if reason != "" {
				return errdefs.Mark(errdefs.ErrUser, fmt.Errorf("%w in pod %s: %s", ErrAgentFailed, p.Name, reason))
			}
			if ok {
				if rw.agentReady != nil {
					rw.agentReady(p)
				}
				// The switch of a pinned rollout waits for the pod to
				// be Ready (its app too): a pod that is not would enter
				// the Service's slice not ready, then ready, two of
				// kube-proxy's rate-limited syncs.
				if rw.pinned == "" || podReady(p) {
					ready++
				}
			}
		}
		if done && ready >= want {
			rw.pods = pods
			return nil
		}
		if ready > lastReady {
			clear(d.since) // progress: what held it before may have been transient
			lastReady = ready
		}
		if again {
			if err := d.check(ctx, pods, time.Now()); err != nil {
				return err
			}
		}
		if time.Since(last) >= time.Second {
			msg := fmt.Sprintf("waiting for %d/%d pods of %s to run the agent, %s", max(want-ready, 0), want, w, time.Since(start).Round(time.Second))
			if d.pending != "" && d.pending != shown {
				msg += " (" + d.pending + ")" // once: the line repeats every second
				shown = d.pending
			}
			progress(msg)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return timedOut()
		case <-time.After(rw.poll):
		case ev, ok := <-pw.events():
			pw.apply(ev, ok)
		}
	}
}

// podWatch keeps the pods of a selector as a watch reports them, from a
// list taken first.
type podWatch struct {
	w    watch.Interface
	pods map[string]*corev1.Pod
}

// watchPods lists and watches the pods of sel; nil (whose methods say it
// is not live) when either fails.
func watchPods(ctx context.Context, cs kubernetes.Interface, ns, sel string) *podWatch {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil
	}
	wi, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return nil
	}
	pw := &podWatch{w: wi, pods: map[string]*corev1.Pod{}}
	for i := range list.Items {
		pw.pods[list.Items[i].Name] = &list.Items[i]
	}
	return pw
}

// live reports whether the watch still runs.
func (pw *podWatch) live() bool { return pw != nil && pw.w != nil }

// events is the watch's channel; nil (never ready) when it is not live.
func (pw *podWatch) events() <-chan watch.Event {
	if !pw.live() {
		return nil
	}
	return pw.w.ResultChan()
}

// apply takes ev (ok false: the channel closed) and every event already
// queued behind it; a watch that ended or failed is no longer live.
func (pw *podWatch) apply(ev watch.Event, ok bool) {
	for {
		if !ok || ev.Type == watch.Error {
			pw.stop()
			return
		}
		if p, isPod := ev.Object.(*corev1.Pod); isPod {
			switch ev.Type {
			case watch.Added, watch.Modified:
				pw.pods[p.Name] = p
			case watch.Deleted:
				delete(pw.pods, p.Name)
			}
		}
		select {
		case ev, ok = <-pw.w.ResultChan():
		default:
			return
		}
	}
}

// list returns the pods, by name.
func (pw *podWatch) list() []corev1.Pod {
	names := slices.Sorted(maps.Keys(pw.pods))
	pods := make([]corev1.Pod, 0, len(names))
	for _, n := range names {
		pods = append(pods, *pw.pods[n])
	}
	return pods
}

func (pw *podWatch) stop() {
	if pw.live() {
		pw.w.Stop()
		pw.w = nil
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
			if agent.ImagePullFailures[w.Reason] {
				return false, fmt.Sprintf("%s: %s\n%s", w.Reason, w.Message, agent.ImageLoadHint(c.Image))
			}
			return false, fmt.Sprintf("%s: %s", w.Reason, w.Message)
		}
		return c.Ready && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil, ""
	}
	return false, ""
}

// diagnosis watches a rollout for what keeps it from finishing: the
// controller unable to create pods (quota, LimitRange, admission webhooks,
// PodSecurity: the Deployment's ReplicaFailure condition, the
// StatefulSet's FailedCreate events), pods that cannot be scheduled, and
// containers beside the agent that cannot start.
type diagnosis struct {
	cs    kubernetes.Interface
	w     journal.Workload
	start time.Time
	// grace is how long a finding that may clear by itself must last.
	grace time.Duration
	// since is when each such finding was first seen, by key.
	since map[string]time.Time
	// pending is what held the rollout at the last check, for progress.
	pending string
	// pinned: the rollout starts every new pod beside the old ones
	// (pin.go), and a finding that may clear by itself (no room for
	// them) ends it at once with errPinRoom, for the configured rollout.
	pinned bool
}

// errPinRoom: a pinned rollout's new pods find no room beside the old
// ones (a quota, the nodes' capacity).
var errPinRoom = errors.New("no room for every new pod beside the running ones")

type finding struct {
	key, text string
	// transient findings may clear by themselves (quota freed by the old
	// pods, a node added); they fail only after grace.
	transient bool
}

// check returns an error for a finding that is permanent, or transient
// and older than the grace.
func (d *diagnosis) check(ctx context.Context, pods []corev1.Pod, now time.Time) error {
	var found []finding
	if f, ok := d.createFailure(ctx); ok {
		found = append(found, f)
	}
	found = append(found, podFindings(pods)...)
	d.pending = ""
	seen := map[string]bool{}
	for _, f := range found {
		if d.pending == "" {
			d.pending = f.text
		}
		if !f.transient {
			return errdefs.User("%s cannot finish its rollout: %s", d.w, f.text)
		}
		if d.pinned {
			return fmt.Errorf("%w: %s", errPinRoom, f.text)
		}
		seen[f.key] = true
		first, ok := d.since[f.key]
		if !ok {
			d.since[f.key] = now
			continue
		}
		if now.Sub(first) >= d.grace {
			return errdefs.User("%s cannot finish its rollout (for %s): %s", d.w, now.Sub(first).Round(time.Second), f.text)
		}
	}
	for k := range d.since {
		if !seen[k] {
			delete(d.since, k)
		}
	}
	return nil
}

// createFailure reports why the workload's controller cannot create pods.
func (d *diagnosis) createFailure(ctx context.Context) (finding, bool) {
	var msg string
	switch d.w.Kind {
	case workload.Deployment:
		dep, err := d.cs.AppsV1().Deployments(d.w.Namespace).Get(ctx, d.w.Name, metav1.GetOptions{})
		if err != nil || dep.Status.ObservedGeneration < dep.Generation {
			return finding{}, false // a status from before tether's change says nothing about it
		}
		for _, c := range dep.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				msg = c.Message
			}
		}
	case workload.StatefulSet:
		// A StatefulSet has no condition for it, only events. Without
		// permission to list them the rollout just waits.
		evs, err := d.cs.CoreV1().Events(d.w.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=StatefulSet,involvedObject.name=" + d.w.Name,
		})
		if err != nil {
			return finding{}, false
		}
		var latest time.Time
		for _, e := range evs.Items {
			t := eventTime(&e)
			if e.InvolvedObject.Kind != "StatefulSet" || e.InvolvedObject.Name != d.w.Name || e.Reason != "FailedCreate" ||
				t.Before(d.start.Add(-5*time.Second)) || t.Before(latest) {
				continue
			}
			latest, msg = t, e.Message
		}
	}
	if msg == "" {
		return finding{}, false
	}
	text, transient := explainCreate(msg)
	return finding{key: "create", text: text, transient: transient}, true
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// explainCreate says why pods cannot be created and what to do, from the
// API server's refusal; transient when it may clear by itself.
func explainCreate(msg string) (string, bool) {
	switch {
	case strings.Contains(msg, "exceeded quota"):
		return "the namespace's ResourceQuota has no room for the new pods (" + msg + "). The rollout needs room for one more pod " +
			"with the agent while the old pods still run: ask for a larger quota, or scale the workload down first", true
	case strings.Contains(msg, "failed quota") || strings.Contains(msg, "must specify"):
		return "the namespace's ResourceQuota refuses the new pods (" + msg + "): every container needs the requests and limits " +
			"the quota covers; give them to the workload's containers (tether's agent has its own)", false
	case strings.Contains(msg, "usage per Container") || strings.Contains(msg, "usage per Pod") || strings.Contains(msg, "limit to request ratio"):
		return "a LimitRange in the namespace refuses the new pods (" + msg + "): ask for a LimitRange that admits the agent's " +
			"requests and limits (docs/intercept.md)", false
	case strings.Contains(msg, "violates PodSecurity"):
		return "the namespace's PodSecurity level refuses the new pods (" + msg + ")", false
	case strings.Contains(msg, "admission webhook"):
		return "an admission webhook refuses the new pods (" + msg + "): ask whoever runs it to admit tether's agent container", false
	}
	return "the controller cannot create its pods: " + msg, false
}

// podFindings reports the pods with the agent that cannot be scheduled or
// whose other containers cannot start (the agent's own are agentState's).
func podFindings(pods []corev1.Pod) []finding {
	var out []finding
	for _, p := range pods {
		if p.DeletionTimestamp != nil || !hasAgent(&corev1.PodTemplateSpec{Spec: p.Spec}) {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				out = append(out, finding{key: "schedule/" + p.Name, transient: true,
					text: fmt.Sprintf("pod %s cannot be scheduled: %s (free or add capacity for the agent's requests, or check the pod's node constraints)", p.Name, c.Message)})
			}
		}
		statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
		for _, c := range statuses {
			if c.Name == inject.AgentContainer || c.State.Waiting == nil || !agentFailureReasons[c.State.Waiting.Reason] {
				continue
			}
			text := fmt.Sprintf("container %s of pod %s: %s: %s", c.Name, p.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
			if c.State.Waiting.Reason == "CrashLoopBackOff" {
				text += fmt.Sprintf(" (it does not run beside the agent; its log: kubectl logs -n %s %s -c %s --previous)", p.Namespace, p.Name, c.Name)
			}
			out = append(out, finding{key: "container/" + p.Name + "/" + c.Name, text: text})
		}
	}
	return out
}
