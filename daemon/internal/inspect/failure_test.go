package inspect_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/daemon/internal/inspect"
)

func TestExplain(t *testing.T) {
	cause := errors.New("tunnel: read handshake reply: EOF")
	a := inspect.Agent{Pod: podName, Container: "tether-inspect", Port: 7342}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		wantErr []string
		// wantCause: the cause comes back unchanged.
		wantCause bool
	}{
		{
			name:    "agent reported running that has exited: its reason",
			pod:     testPod(withAgent("tether-inspect", image, 7342, false, exited(1, "Error", "tether-demo: unknown subcommand", time.Second))),
			wantErr: []string{"exited: Error (exit code 1)", "tether-demo: unknown subcommand", "--agent-image"},
		},
		{
			name:      "pod gone: the cause",
			wantCause: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, clusterConfig{pod: tt.pod})
			err := inspect.Explain(t.Context(), c, a, ns, cause)
			if tt.wantCause {
				if diff := cmp.Diff(cause.Error(), err.Error()); diff != "" {
					t.Errorf("Explain (-want +got):\n%s", diff)
				}
				return
			}
			checkErr(t, err, tt.wantErr, false)
		})
	}
}
