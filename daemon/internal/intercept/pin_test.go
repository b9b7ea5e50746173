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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
)

// pinnable is a Deployment whose rollout is done, with the API server's
// default strategy, one replica.
func pinnable() *appsv1.Deployment {
	d := deployment()
	surge := intstr.FromString("25%")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &surge}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "orders"}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	return d
}

func runningPod(name, hash string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels: map[string]string{"app": "orders", pinLabel: hash}}}
}

// TestPlanPin: the pinned rollout is used for a small Deployment whose
// pods can all start beside the running ones, and not otherwise, each
// time saying why.
func TestPlanPin(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "orders"}}}
	tests := []struct {
		name    string
		req     Request
		change  func(*appsv1.Deployment, *corev1.Service)
		pods    []runtime.Object
		wantWhy string // "" when pinned
	}{
		{"eligible", Request{}, nil, nil, ""},
		{"record only", Request{RecordOnly: true}, nil, nil, "recording only"},
		{"paused", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) { d.Spec.Paused = true }, nil, "paused"},
		{"recreate", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}, nil, "Recreate"},
		{"min ready", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) { d.Spec.MinReadySeconds = 5 }, nil, "minReadySeconds"},
		{"too many replicas", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) {
			n := int32(pinMaxReplicas + 1)
			d.Spec.Replicas = &n
		}, nil, "11 replicas"},
		{"rollout under way", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) { d.Status.UpdatedReplicas = 0 }, nil, "under way"},
		{"no surge", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) {
			zero := intstr.FromInt32(0)
			d.Spec.Strategy.RollingUpdate.MaxSurge = &zero
		}, nil, "maxSurge 0"},
		{"anti-affinity", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) {
			d.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname"}}}}
		}, nil, "anti-affinity"},
		{"host port", Request{}, func(d *appsv1.Deployment, _ *corev1.Service) {
			d.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
		}, nil, "host port 8080"},
		{"selects by hash", Request{}, func(_ *appsv1.Deployment, s *corev1.Service) { s.Spec.Selector[pinLabel] = "abc" }, nil, "selects by"},
		{"two templates", Request{}, nil, []runtime.Object{runningPod("orders-b", "def")}, "not all of one ReplicaSet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, s := pinnable(), svc.DeepCopy()
			if tt.change != nil {
				tt.change(d, s)
			}
			cs := fake.NewClientset(append([]runtime.Object{d, runningPod("orders-a", "abc")}, tt.pods...)...)
			m := &Manager{CS: cs}
			p, why, err := m.planPin(context.Background(), tt.req, journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}, s)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantWhy == "" {
				if p == nil {
					t.Fatalf("not pinned (%s), want pinned", why)
				}
				if p.old != "abc" || p.to.MinReadySeconds != pinHold || p.to.Strategy.RollingUpdate.MaxSurge.String() != "100%" {
					t.Errorf("plan %+v: want the old hash abc, maxSurge 100%% and the hold", p)
				}
				if p.j.Rollout.Strategy.RollingUpdate.MaxSurge.String() != "25%" {
					t.Errorf("journal keeps %+v, want the Deployment's own settings", p.j.Rollout)
				}
				return
			}
			if p != nil || !strings.Contains(why, tt.wantWhy) {
				t.Errorf("planPin = %v, %q; want not pinned because %q", p, why, tt.wantWhy)
			}
		})
	}
}

// TestPinnedRolloutNoRoom: in a pinned rollout, a new pod that cannot be
// scheduled or a full quota ends the wait at once with errPinRoom (the
// intercept then rolls out as configured), where an ordinary rollout
// would wait out the grace.
func TestPinnedRolloutNoRoom(t *testing.T) {
	unschedulable := newPod("orders-new", func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."}}
	})
	for name, objs := range map[string][]runtime.Object{
		"unschedulable": {deployment(), unschedulable},
		"quota full":    {deployment(replicaFailure("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"))},
	} {
		t.Run(name, func(t *testing.T) {
			rw := rolloutWaiter{cs: fake.NewClientset(objs...), grace: time.Hour, poll: 10 * time.Millisecond, pinned: "abc"}
			err := rw.wait(context.Background(), journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}, 5*time.Second, func(string) {})
			if !errors.Is(err, errPinRoom) {
				t.Fatalf("wait() = %v, want errPinRoom", err)
			}
		})
	}
}

// TestPinnedRolloutWaitsForReadyPods: a pinned rollout is done when every
// new pod is Ready, its app too, not when its agent is: a pod switched to
// before would enter the Service's slice not ready, then ready, two of
// kube-proxy's rate-limited syncs. The old pods do not count.
func TestPinnedRolloutWaitsForReadyPods(t *testing.T) {
	pod := newPod("orders-new", func(p *corev1.Pod) {
		p.Labels[pinLabel] = "def"
		p.Status.Phase, p.Status.PodIP = corev1.PodRunning, "10.42.0.9"
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: inject.AgentContainer, Ready: true}, {Name: "orders"}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	})
	old := runningPod("orders-old", "abc")
	old.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	cs := fake.NewClientset(deployment(), pod, old)
	var seen []string
	rw := rolloutWaiter{cs: cs, grace: time.Hour, poll: 5 * time.Millisecond, pinned: "abc",
		agentReady: func(p *corev1.Pod) { seen = append(seen, p.Name) }}
	w := journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}
	if err := rw.wait(context.Background(), w, 200*time.Millisecond, func(string) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait() = %v with the app not ready, want the timeout", err)
	}
	if len(seen) == 0 || seen[0] != "orders-new" {
		t.Errorf("agentReady saw %v, want orders-new (its agent is ready)", seen)
	}
	pod.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := rw.wait(context.Background(), w, 5*time.Second, func(string) {}); err != nil {
		t.Errorf("wait() = %v once the pod is Ready, want nil", err)
	}
}
