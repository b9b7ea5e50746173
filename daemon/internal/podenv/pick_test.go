package podenv

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/internal/errdefs"
)

func TestPickContainer(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy"}, {Name: "app"}}}}
	withDefault := pod.DeepCopy()
	withDefault.Annotations = map[string]string{"kubectl.kubernetes.io/default-container": "app"}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		c, want string
		wantErr string
	}{
		{"named", pod, "app", "app", ""},
		{"first by default", pod, "", "istio-proxy", ""},
		{"the annotated default", withDefault, "", "app", ""},
		{"unknown", pod, "nope", "", `pod p has no container "nope"; containers: istio-proxy, app`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PickContainer(tt.pod, tt.c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrUser) {
					t.Fatalf("err %v, want a user error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
