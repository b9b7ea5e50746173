package server

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/internal/errdefs"
)

// TestServiceAddress: `replay --to cluster` goes to the Service of the
// workload whose port leads to the agent port an exchange was recorded
// on, never to a Host the caller wrote (issue 9, finding 7).
func TestServiceAddress(t *testing.T) {
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop", Labels: map[string]string{"app": "orders"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "orders", Ports: []corev1.ContainerPort{{Name: "app", ContainerPort: 8080}}},
			{Name: "tether-agent", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 17000}}},
		}},
	}
	svc := func(name, ip string, sel map[string]string, ports ...corev1.ServicePort) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel, Ports: ports}}
	}
	app := map[string]string{"app": "orders"}
	tests := []struct {
		name string
		svcs []corev1.Service
		port int
		want string
	}{
		{"numeric target", []corev1.Service{svc("orders", "10.43.0.9", app, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(17000)})}, 17000, "10.43.0.9:80"},
		{"named target", []corev1.Service{svc("orders", "10.43.0.9", app, corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http")})}, 17000, "10.43.0.9:80"},
		{"the matching port of several", []corev1.Service{svc("orders", "10.43.0.9", app,
			corev1.ServicePort{Port: 9090, TargetPort: intstr.FromInt32(9090)}, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(17000)})}, 17000, "10.43.0.9:80"},
		{"headless by name", []corev1.Service{svc("orders", "None", app, corev1.ServicePort{Port: 17000})}, 17000, "orders.shop.svc:17000"},
		{"another workload's Service is skipped", []corev1.Service{
			svc("a-other", "10.43.0.1", map[string]string{"app": "pay"}, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(17000)}),
			svc("orders", "10.43.0.9", app, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(17000)})}, 17000, "10.43.0.9:80"},
		{"no Service", []corev1.Service{svc("orders", "10.43.0.9", nil, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(17000)})}, 17000, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serviceAddress(tt.svcs, pod, tt.port)
			if tt.want == "" {
				if errdefs.Class(err) != errdefs.ErrUser {
					t.Fatalf("got %q, %v; want a user error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
