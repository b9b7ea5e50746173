package server

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// TestRunChecksBeforeChanging: bad input is refused with a user error
// before anything is added to a pod.
func TestRunChecksBeforeChanging(t *testing.T) {
	d, cs := fakeCluster(t, access.Rule{})
	addReadyPod(t, d)
	cs.Tracker().Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}})
	cs.ClearActions()
	tests := []struct {
		name string
		req  daemon.RunRequest
		want string
	}{
		{"a container without a target", daemon.RunRequest{Namespace: "shop", Container: "app"}, "-c app names a container of the target"},
		{"no target, an unknown Service", daemon.RunRequest{Namespace: "shop", Services: []string{"nope:80"}}, `no Service "nope"`},
		{"unknown workload", daemon.RunRequest{Namespace: "shop", Target: "deploy/nope"}, "nope"},
		{"unknown pod", daemon.RunRequest{Namespace: "shop", Target: "pod/nope"}, `no pod "nope"`},
		{"a bare name is a workload", daemon.RunRequest{Namespace: "shop", Target: "nope"}, "nope"},
		{"unknown container", daemon.RunRequest{Namespace: "shop", Target: "pod/orders-1", Container: "x"}, `has no container "x"`},
		{"unknown Service", daemon.RunRequest{Namespace: "shop", Target: "deploy/orders", Services: []string{"nope:80"}}, `no Service "nope"`},
		{"unknown Service port", daemon.RunRequest{Namespace: "shop", Target: "deploy/orders", Services: []string{"db:80"}},
			"Service db has no port 80; ports: 5432/pg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Run(context.Background(), tt.req, func(string) {}, func(daemon.RunInfo) { t.Error("the run started") })
			if err == nil || !strings.Contains(err.Error(), tt.want) || !userError(err) {
				t.Errorf("err %v, want a user error saying %q", err, tt.want)
			}
			if tt.name == "a bare name is a workload" && strings.Contains(err.Error(), "no pod") {
				t.Errorf("a bare name was taken for a pod: %v", err)
			}
			if w := writes(cs); len(w) > 0 {
				t.Errorf("changed the cluster: %v", w)
			}
		})
	}
}

// userError: err is one the user can fix (exit 2).
func userError(err error) bool {
	c := errdefs.Class(err)
	return c == errdefs.ErrUser || c == errdefs.ErrNotFound
}

// addReadyPod adds orders-1, a ready pod of deploy/orders, to the fake
// cluster without it counting as a change.
func addReadyPod(t *testing.T, d *Daemon) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop", Labels: map[string]string{"app": "orders"}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "orders"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	if err := d.cs.(*fake.Clientset).Tracker().Add(pod); err != nil {
		t.Fatal(err)
	}
}
