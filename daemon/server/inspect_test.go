package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// startingDialer reaches an agent that listens only from its fails+1th
// dial on: until then, like a port-forward to a port nobody listens on,
// each connection ends at once.
type startingDialer struct {
	fails int32
	tries atomic.Int32
	addr  string
}

func (s *startingDialer) DialPod(ctx context.Context, _, _ string, _ int) (net.Conn, error) {
	if s.tries.Add(1) <= s.fails {
		c, other := net.Pipe()
		other.Close()
		return c, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.addr)
}

// inspectPod is pod orders-1 with agent tether-inspect in state.
func inspectPod(state corev1.ContainerState) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop"},
		Spec: corev1.PodSpec{EphemeralContainers: []corev1.EphemeralContainer{{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "tether-inspect", Image: "tether-agent:dev"}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "tether-inspect", State: state}}},
	}
}

// TestLinkStarting: a new agent the kubelet reports running before it
// listens is dialed again until it answers; one whose container stopped
// is reported with the kubelet's reason.
func TestLinkStarting(t *testing.T) {
	addr, token := inProcessAgentAddr(t)
	a := inspect.Agent{Pod: "orders-1", Container: "tether-inspect", Port: 7342, Token: token, Bootstrap: true}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}

	t.Run("answers on the fourth try", func(t *testing.T) {
		dialer := &startingDialer{fails: 3, addr: addr}
		d := &Daemon{cs: fake.NewClientset(inspectPod(running)), dialer: dialer, log: slog.New(slog.DiscardHandler)}
		link, err := d.linkStarting(t.Context(), "shop", a)
		if err != nil {
			t.Fatalf("linkStarting: %v", err)
		}
		defer link.Close()
		if got := dialer.tries.Load(); got != 4 {
			t.Errorf("dialed %d times, want 4", got)
		}
	})
	t.Run("container stopped", func(t *testing.T) {
		exited := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "agent: bad flag"}}
		dialer := &startingDialer{fails: 1 << 30, addr: addr}
		d := &Daemon{cs: fake.NewClientset(inspectPod(exited)), dialer: dialer, log: slog.New(slog.DiscardHandler)}
		_, err := d.linkStarting(t.Context(), "shop", a)
		if err == nil || !strings.Contains(err.Error(), "exited: Error (exit code 1)") || !strings.Contains(err.Error(), "agent: bad flag") {
			t.Fatalf("linkStarting = %v, want the kubelet's reason", err)
		}
		if got := dialer.tries.Load(); got < 5 {
			t.Errorf("dialed %d times before the container's state was read, want about 10", got)
		}
	})
}
