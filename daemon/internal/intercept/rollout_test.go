package intercept

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

var one = int32(1)

func deployment(conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns, Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 0, AvailableReplicas: 1, Conditions: conds},
	}
}

func statefulSet() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns, Generation: 2},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
		},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, CurrentRevision: "a", UpdateRevision: "b", ReadyReplicas: 1},
	}
}

func replicaFailure(msg string) appsv1.DeploymentCondition {
	return appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: msg}
}

// newPod is a pod of the changed template (with the agent), status set by fn.
func newPod(name string, fn func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "orders"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "orders"}, {Name: inject.AgentContainer}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	fn(p)
	return p
}

func waiting(name, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

// TestRolloutFailsFastWithReason: a rollout that cannot finish fails within
// the grace, saying why and what to do, instead of waiting out the rollout
// timeout and saying "context deadline exceeded".
func TestRolloutFailsFastWithReason(t *testing.T) {
	quotaSpec := `pods "orders-7d9-x" is forbidden: failed quota: q: must specify limits.cpu for: tether-agent; limits.memory for: tether-agent`
	quotaFull := `pods "orders-7d9-x" is forbidden: exceeded quota: q, requested: limits.memory=192Mi, used: limits.memory=64Mi, limited: limits.memory=150Mi`
	tests := []struct {
		name string
		kind string
		objs []runtime.Object
		want []string
	}{
		{"quota needs limits", workload.Deployment, []runtime.Object{deployment(replicaFailure(quotaSpec))},
			[]string{"ResourceQuota refuses the new pods", "must specify limits.cpu"}},
		{"quota full", workload.Deployment, []runtime.Object{deployment(replicaFailure(quotaFull))},
			[]string{"ResourceQuota has no room", "limited: limits.memory=150Mi", "room for one more pod"}},
		{"limit range", workload.Deployment, []runtime.Object{deployment(replicaFailure(`pods "x" is forbidden: maximum memory usage per Container is 64Mi, but limit is 128Mi`))},
			[]string{"a LimitRange in the namespace refuses", "maximum memory usage per Container is 64Mi"}},
		{"webhook", workload.Deployment, []runtime.Object{deployment(replicaFailure(`admission webhook "policy.example.com" denied the request: no sidecars`))},
			[]string{"an admission webhook refuses the new pods", "no sidecars"}},
		{"statefulset pod security", workload.StatefulSet, []runtime.Object{statefulSet(), &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: "orders.1", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "orders", Namespace: ns},
			Reason:         "FailedCreate", Type: corev1.EventTypeWarning, LastTimestamp: metav1.Now(),
			Message: `create Pod orders-0 in StatefulSet orders failed error: pods "orders-0" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true`,
		}}, []string{"PodSecurity level refuses the new pods", "runAsNonRoot != true"}},
		{"unschedulable", workload.Deployment, []runtime.Object{deployment(), newPod("orders-new", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient memory."}}
		})}, []string{"pod orders-new cannot be scheduled", "Insufficient memory"}},
		{"app crash loop beside the agent", workload.Deployment, []runtime.Object{deployment(), newPod("orders-new", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{waiting("orders", "CrashLoopBackOff", "back-off 10s restarting failed container")}
		})}, []string{"container orders of pod orders-new: CrashLoopBackOff", "kubectl logs -n shop orders-new -c orders --previous"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objs...)
			rw := rolloutWaiter{cs: cs, grace: 100 * time.Millisecond, poll: 10 * time.Millisecond}
			err := rw.wait(context.Background(), journal.Workload{Kind: tt.kind, Namespace: ns, Name: "orders"}, 5*time.Second, func(string) {})
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errdefs.ErrUser) {
				t.Fatalf("wait() = %v; want a user error with the reason before the rollout timeout", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestRolloutIgnoresStaleStatus: a ReplicaFailure the controller reported
// before it saw tether's change, and a FailedCreate event from before the
// rollout, do not fail it.
func TestRolloutIgnoresStaleStatus(t *testing.T) {
	stale := deployment(replicaFailure("exceeded quota: q"))
	stale.Generation = 3
	oldEvent := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "orders.1", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "orders", Namespace: ns},
		Reason:         "FailedCreate", LastTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)), Message: "violates PodSecurity",
	}
	for _, tc := range []struct {
		kind string
		objs []runtime.Object
	}{
		{workload.Deployment, []runtime.Object{stale}},
		{workload.StatefulSet, []runtime.Object{statefulSet(), oldEvent}},
	} {
		rw := rolloutWaiter{cs: fake.NewClientset(tc.objs...), grace: 10 * time.Millisecond, poll: 10 * time.Millisecond}
		err := rw.wait(context.Background(), journal.Workload{Kind: tc.kind, Namespace: ns, Name: "orders"}, 300*time.Millisecond, func(string) {})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: wait() = %v, want the rollout timeout", tc.kind, err)
		}
	}
}

// TestRolloutTransientClears: a full quota that clears within the grace
// (the old pod went away) does not fail the rollout.
func TestRolloutTransientClears(t *testing.T) {
	d := deployment(replicaFailure("exceeded quota: q"))
	cs := fake.NewClientset(d)
	done := make(chan error, 1)
	rw := rolloutWaiter{cs: cs, grace: time.Hour, poll: 10 * time.Millisecond}
	go func() {
		done <- rw.wait(context.Background(), journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}, time.Minute, func(string) {})
	}()
	time.Sleep(50 * time.Millisecond)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	if _, err := cs.AppsV1().Deployments(ns).UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := newPod("orders-new", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: inject.AgentContainer, Ready: true}}
	})
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), ready, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("wait() = %v, want nil once the pods run the agent", err)
	}
}

// TestRolloutReportsReadyAgents: while the rollout goes on, each pod seen
// with a ready agent is handed to agentReady (the intercept opens its
// tunnel then), before the controller reports the rollout done; a pod
// whose agent is not ready is not.
func TestRolloutReportsReadyAgents(t *testing.T) {
	d := deployment() // not done: 2 replicas, none updated
	ready := newPod("orders-new", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: inject.AgentContainer, Ready: true}}
	})
	starting := newPod("orders-starting", func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: inject.AgentContainer}}
	})
	cs := fake.NewClientset(d, ready, starting)
	seen := make(chan string, 100)
	rw := newRolloutWaiter(cs)
	rw.look = 10 * time.Millisecond
	rw.agentReady = func(p *corev1.Pod) { seen <- p.Name }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- rw.wait(ctx, journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}, time.Minute, func(string) {})
	}()
	select {
	case got := <-seen:
		if got != "orders-new" {
			t.Errorf("agentReady(%s), want orders-new", got)
		}
	case err := <-done:
		t.Fatalf("wait() = %v before any pod was reported", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no pod reported while the rollout went on")
	}
	cancel()
	<-done
	close(seen)
	for got := range seen {
		if got != "orders-new" {
			t.Errorf("agentReady(%s): its agent is not ready", got)
		}
	}
}

// TestPodWatch: the pods a watch reports are the list's, changed by each
// event and by every event queued behind it; a bookmark changes nothing;
// a watch that ends is no longer live (the waiter then lists).
func TestPodWatch(t *testing.T) {
	cs := fake.NewClientset(newPod("orders-a", func(*corev1.Pod) {}), newPod("orders-b", func(*corev1.Pod) {}))
	pw := watchPods(context.Background(), cs, ns, "app=orders")
	if !pw.live() {
		t.Fatal("watchPods: not live")
	}
	names := func() []string {
		var n []string
		for _, p := range pw.list() {
			n = append(n, p.Name)
		}
		return n
	}
	if got := strings.Join(names(), ","); got != "orders-a,orders-b" {
		t.Fatalf("pods from the list = %s", got)
	}
	fw := watch.NewFakeWithChanSize(3, false)
	pw.w.Stop()
	pw.w = fw
	fw.Add(newPod("orders-c", func(*corev1.Pod) {}))
	fw.Delete(newPod("orders-a", func(*corev1.Pod) {}))
	fw.Action(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9"}})
	ev, ok := <-pw.events()
	pw.apply(ev, ok)
	if got := strings.Join(names(), ","); got != "orders-b,orders-c" {
		t.Errorf("pods after add, delete and bookmark = %s, want orders-b,orders-c", got)
	}
	fw.Stop()
	ev, ok = <-pw.events()
	pw.apply(ev, ok)
	if pw.live() || pw.events() != nil {
		t.Error("the watch ended, and the podWatch is still live")
	}
	var none *podWatch
	if none.live() || none.events() != nil {
		t.Error("a nil podWatch is live")
	}
}
