//go:build integration

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/integration/cluster"
)

// inspectContainers returns the pod's inspection containers and what each
// is doing (running, or the kubelet's reason).
func (e *env) inspectContainers(pod string) map[string]string {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(e.t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range p.Spec.EphemeralContainers {
		if strings.HasPrefix(c.Name, "tether-inspect") {
			out[c.Name] = "not reported"
		}
	}
	for _, s := range p.Status.EphemeralContainerStatuses {
		switch {
		case s.State.Running != nil:
			out[s.Name] = "running"
		case s.State.Waiting != nil:
			out[s.Name] = s.State.Waiting.Reason
		case s.State.Terminated != nil:
			out[s.Name] = s.State.Terminated.Reason
		}
	}
	return out
}

// TestInspectAgentsShareAPod: trace, capture, trace, capture on one pod
// all work: the trace's non-root agent and the capture's root agent each
// listen on a port of their own, each later command reuses the agent it
// can use, and the pod ends with two running inspection containers.
// Before per-agent ports the first capture's agent could not bind the
// trace agent's port and exited ("Error (exit 1)").
func TestInspectAgentsShareAPod(t *testing.T) {
	e := newEnvLevel(t, "baseline") // capture needs CAP_NET_RAW, which restricted forbids
	e.deployOrders(1)
	pod := e.clientPod("client")
	dir := t.TempDir()
	for i, verb := range []string{"trace", "capture", "trace", "capture"} {
		switch verb {
		case "trace":
			if rep, code := e.trace(pod, "svc/orders"); code != 0 {
				t.Fatalf("command %d, trace: exit %d, want 0:\n%s", i+1, code, reportText(rep))
			}
		case "capture":
			file := filepath.Join(dir, verb+".pcap")
			_, stderr, code := e.tether(agentImage("capture", pod, "--duration", "2s", "-w", file, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
			if code != 0 {
				t.Fatalf("command %d, capture: exit %d, want 0; stderr:\n%s", i+1, code, stderr)
			}
		}
		t.Logf("after %s: %v", verb, e.inspectContainers(pod))
	}
	got := e.inspectContainers(pod)
	if len(got) > 2 {
		t.Errorf("the pod has %d inspection containers, want at most 2: %v", len(got), got)
	}
	for name, state := range got {
		if state != "running" {
			t.Errorf("inspection container %s: %s, want running", name, state)
		}
	}
}

// TestInspectAgentFailureReported: an agent that cannot start (its image
// does not exist) or that exits at once (an image that is not the agent)
// is reported with the kubelet's reason or the agent's last output, well
// before the two-minute start timeout, and a second try reports the same
// reason without adding another container to the pod.
func TestInspectAgentFailureReported(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	tests := []struct {
		name, image string
		want        []string // any one of each group's words
	}{
		{"image missing", "docker.io/tetherkube/tether-agent:no-such-tag", []string{"ErrImagePull|ImagePullBackOff", "--agent-image"}},
		{"agent exits", cluster.DemoImage, []string{"exit code 1", "tether-demo", "--agent-image"}},
	}
	added := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added++
			for try := 1; try <= 2; try++ {
				start := time.Now()
				_, stderr, code := e.tether("trace", pod, "svc/orders", "--agent-image", tt.image, "-n", e.ns)
				took := time.Since(start)
				t.Logf("try %d: exit %d after %s:\n%s", try, code, took.Round(time.Millisecond), stderr)
				if code != 2 {
					t.Errorf("try %d: exit %d, want 2", try, code)
				}
				for _, group := range tt.want {
					found := false
					for _, w := range strings.Split(group, "|") {
						found = found || strings.Contains(stderr, w)
					}
					if !found {
						t.Errorf("try %d: stderr does not say %q", try, group)
					}
				}
				if took > time.Minute {
					t.Errorf("try %d took %s: the failure was not noticed before the start timeout", try, took)
				}
				if got := e.inspectContainers(pod); len(got) != added {
					t.Errorf("try %d: the pod has %d inspection containers, want %d: %v", try, len(got), added, got)
				}
			}
		})
	}
}
