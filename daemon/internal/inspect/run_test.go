package inspect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// withRunAgent adds a run agent that sees target's processes as uid.
func withRunAgent(name string, port int, target string, uid *int64) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: name, Image: image, SecurityContext: &corev1.SecurityContext{RunAsUser: uid},
				Args: []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", port), "--token-env", "TETHER_TOKEN", "--bootstrap-ttl", "2m0s", "--serve", "run"},
				Env:  []corev1.EnvVar{{Name: "TETHER_TOKEN", Value: "token-of-" + name}},
			}, TargetContainerName: target})
		p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
			corev1.ContainerStatus{Name: name, Image: image, State: *running()})
	}
}

func twoContainers(p *corev1.Pod) {
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "side:1"})
}

// TestEnsureRunAgent: a run agent is reused only for the container it
// targets and the user it runs as; a new one gets both.
func TestEnsureRunAgent(t *testing.T) {
	u := func(n int64) *int64 { return &n }
	run := func(container string, uid *int64) inspect.Request {
		return inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Job: agent.JobRun, Container: container, RunAsUser: uid}
	}
	type want struct {
		container string // the agent Ensure returns
		reused    bool
		target    string // of the added agent
		uid       *int64
		nonRoot   bool
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		req  inspect.Request
		want want
	}{
		{"same container and user: reused", testPod(withRunAgent("tether-inspect", 7342, "app", u(1234))), run("app", u(1234)),
			want{container: "tether-inspect", reused: true}},
		{"no user asked: any user's agent for the container", testPod(withRunAgent("tether-inspect", 7342, "app", u(1234))), run("app", nil),
			want{container: "tether-inspect", reused: true}},
		{"no container asked (dialing): any run agent", testPod(withRunAgent("tether-inspect", 7342, "app", u(1234))), run("", nil),
			want{container: "tether-inspect", reused: true}},
		{"another user: a new agent as that user", testPod(withRunAgent("tether-inspect", 7342, "app", u(1234))), run("app", u(1000)),
			want{container: "tether-inspect-2", target: "app", uid: u(1000), nonRoot: true}},
		{"another container: a new agent targeting it", testPod(twoContainers, withRunAgent("tether-inspect", 7342, "app", u(1234))), run("side", u(1234)),
			want{container: "tether-inspect-2", target: "side", uid: u(1234), nonRoot: true}},
		{"a trace agent does not serve run", testPod(withAgent("tether-inspect", image, 7342, false, running())), run("app", nil),
			want{container: "tether-inspect-2", target: "app", nonRoot: true}},
		{"a process of root: a root agent with the runtime's capabilities", testPod(), run("app", u(0)),
			want{container: "tether-inspect", target: "app", uid: u(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, clusterConfig{pod: tt.pod})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			a, err := inspect.Ensure(ctx, c, tt.req, func(string) {})
			if err != nil {
				t.Fatal(err)
			}
			got := want{container: a.Container, reused: !a.Bootstrap}
			if !got.reused {
				p, err := c.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ec := p.Spec.EphemeralContainers[len(p.Spec.EphemeralContainers)-1]
				sc := ec.SecurityContext
				got.target, got.uid = ec.TargetContainerName, sc.RunAsUser
				got.nonRoot = sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.Capabilities != nil && len(sc.Capabilities.Drop) == 1
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
