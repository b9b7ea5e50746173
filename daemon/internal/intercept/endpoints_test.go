package intercept

import (
	"context"
	"errors"
	"maps"
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

func labeledPod(name string, labels map[string]string, owner string) *corev1.Pod {
	yes := true
	labels = maps.Clone(labels)
	if h, ok := strings.CutPrefix(owner, "orders-"); ok {
		labels[appsv1.DefaultDeploymentUniqueLabelKey] = h
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: owner, Controller: &yes}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

// cluster is a namespace with deployment/orders (app=orders, track=stable)
// and service/orders selecting svcSelector, plus extra objects.
func cluster(svc func(*corev1.Service), extra ...runtime.Object) *fake.Clientset {
	stable := map[string]string{"app": "orders", "track": "stable"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: stable},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: stable},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "orders",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.10", Selector: map[string]string{"app": "orders"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}},
	}
	if svc != nil {
		svc(s)
	}
	objs := append([]runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, d, s,
		labeledPod("orders-1", stable, "orders-6f7"),
	}, extra...)
	return fake.NewClientset(objs...)
}

// TestStartRefusesWhatCannotReceiveTraffic: an intercept whose Service
// sends traffic past the agent is refused before anything changes.
func TestStartRefusesWhatCannotReceiveTraffic(t *testing.T) {
	canary := labeledPod("orders-canary-1", map[string]string{"app": "orders", "track": "canary"}, "orders-canary-5c4")
	tests := []struct {
		name     string
		cs       *fake.Clientset
		sentinel error
		want     string
	}{
		{"service selects another workload's pods", cluster(nil, canary), ErrSharedService,
			"service orders also selects pod/orders-canary-1 (of replicaset/orders-canary-5c4), which deployment/orders does not manage"},
		{"overlapping selectors", cluster(nil, labeledPod("canary-1", map[string]string{"app": "orders", "track": "stable"}, "canary-5c4")), ErrSharedService,
			"service orders also selects pod/canary-1 (of replicaset/canary-5c4), which deployment/orders does not manage"},
		{"headless service", cluster(func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }), inject.ErrHeadless,
			"service orders is headless (clusterIP: None)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{CS: tt.cs}
			_, err := m.Start(context.Background(), Request{Namespace: ns, Workload: "orders", ServicePort: "http",
				RecordOnly: true, RolloutTimeout: time.Second})
			if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start() = %v, want %v saying %q", err, tt.sentinel, tt.want)
			}
			for _, a := range tt.cs.Actions() {
				if v := a.GetVerb(); v != "get" && v != "list" {
					t.Errorf("a refused intercept changed the cluster: %s %s", v, a.GetResource().Resource)
				}
			}
		})
	}
}

// TestCheckSelectsOnlyOwnPods: a Service selecting only the workload's pods
// (and finished pods of others) passes.
func TestCheckSelectsOnlyOwnPods(t *testing.T) {
	done := labeledPod("job-1", map[string]string{"app": "orders"}, "migrate")
	done.Status.Phase = corev1.PodSucceeded
	cs := cluster(nil, done)
	svc, err := cs.CoreV1().Services(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := workloadOf(cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSelectsOnly(context.Background(), cs, svc, w); err != nil {
		t.Errorf("checkSelectsOnly() = %v", err)
	}
}

func workloadOf(cs *fake.Clientset) (journal.Workload, error) {
	return workload.Client{CS: cs}.Resolve(context.Background(), ns, "orders")
}
