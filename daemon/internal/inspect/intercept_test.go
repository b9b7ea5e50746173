package inspect_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// withInterceptAgent adds an intercept agent forwarding listen to app.
func withInterceptAgent(name string, port, listen, app int, state *corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: name, Image: image,
				Args: []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", port), "--token-env", "TETHER_TOKEN", "--bootstrap-ttl", "2m0s",
					"--serve", "intercept", "--forward", fmt.Sprintf("%d:%d", listen, app)},
				Env: []corev1.EnvVar{{Name: "TETHER_TOKEN", Value: "token-of-" + name}},
			}})
		p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
			corev1.ContainerStatus{Name: name, Image: image, State: *state})
	}
}

// TestEnsureInterceptAgent: an intercept agent is reused only with the
// same --forward; a new one never takes the forward's port as its tunnel
// port, and runs as non-root without capabilities.
func TestEnsureInterceptAgent(t *testing.T) {
	req := func(listen, app int, early bool) inspect.Request {
		return inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Job: agent.JobIntercept, Forward: [2]int{listen, app}, Early: early,
			Args: []string{"--no-record"}}
	}
	type want struct {
		container string
		reused    bool
		port      int
		args      []string
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		req  inspect.Request
		want want
	}{
		{"same forward: reused", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running())), req(17000, 8080, false),
			want{container: "tether-inspect", reused: true, port: 7342}},
		{"another forward: a new agent", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running())), req(17001, 8080, false),
			want{container: "tether-inspect-2", port: 7343, args: []string{"--tunnel", "127.0.0.1:7343", "--token-env", "TETHER_TOKEN",
				"--bootstrap-ttl", "2m0s", "--serve", "intercept,probe", "--forward", "17001:8080", "--no-record"}}},
		{"the forward's port is not a tunnel port", testPod(), req(7342, 8080, true),
			want{container: "tether-inspect", port: 7343, args: []string{"--tunnel", "127.0.0.1:7343", "--token-env", "TETHER_TOKEN",
				"--bootstrap-ttl", "2m0s", "--serve", "intercept,probe", "--forward", "7342:8080", "--no-record"}}},
		{"a trace agent does not intercept", testPod(withAgent("tether-inspect", image, 7342, false, running())), req(17000, 8080, true),
			want{container: "tether-inspect-2", port: 7343, args: []string{"--tunnel", "127.0.0.1:7343", "--token-env", "TETHER_TOKEN",
				"--bootstrap-ttl", "2m0s", "--serve", "intercept,probe", "--forward", "17000:8080", "--no-record"}}},
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
			got := want{container: a.Container, reused: !a.Bootstrap, port: a.Port}
			if !got.reused {
				p, err := c.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ec := p.Spec.EphemeralContainers[len(p.Spec.EphemeralContainers)-1]
				got.args = ec.Args
				if sc := ec.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil ||
					!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("security context %+v: want non-root without capabilities", sc)
				}
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestInterceptAgentDied and ForwardUsable read the pod's spec and status.
func TestInterceptAgentDied(t *testing.T) {
	dead := exited(137, "Error", "", time.Minute)
	if _, died := inspect.InterceptAgentDied(testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running()))); died {
		t.Errorf("a running agent reported dead")
	}
	if name, died := inspect.InterceptAgentDied(testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, dead))); !died || name != "tether-inspect" {
		t.Errorf("a killed agent: %q %v, want tether-inspect true", name, died)
	}
	if _, died := inspect.InterceptAgentDied(testPod(withAgent("tether-inspect", image, 7342, false, dead))); died {
		t.Errorf("a trace agent that exited is no intercept agent")
	}
	p := testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running()))
	for _, tc := range []struct {
		port, app int
		want      bool
	}{{17000, 8080, true}, {17000, 9090, false}, {7342, 8080, false}, {17001, 8080, true}} {
		if got := inspect.ForwardUsable(p, tc.port, tc.app); got != tc.want {
			t.Errorf("ForwardUsable(%d, %d) = %v, want %v", tc.port, tc.app, got, tc.want)
		}
	}
	if inspect.ForwardUsable(testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, dead)), 17000, 8080) {
		t.Errorf("the port of a dead agent is usable")
	}
}

// TestEnsureInterceptAgentUnreadableToken: a running intercept agent whose
// token tether cannot read is not doubled (a second one could not listen
// on its port): the error names the Secret.
func TestEnsureInterceptAgentUnreadableToken(t *testing.T) {
	c := newCluster(t, clusterConfig{pod: testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running())), unstored: []string{"tether-inspect"}})
	_, err := inspect.Ensure(t.Context(), c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Job: agent.JobIntercept,
		Forward: [2]int{17000, 8080}}, func(string) {})
	checkErr(t, err, []string{"runs tether's intercept agent tether-inspect on port 17000, but tether cannot read its token",
		inspect.TokenSecretName(podName, "tether-inspect"), "get on secrets"}, false)
	p, _ := c.CoreV1().Pods(ns).Get(t.Context(), podName, metav1.GetOptions{})
	if len(p.Spec.EphemeralContainers) != 1 {
		t.Errorf("%d ephemeral containers, want the one there", len(p.Spec.EphemeralContainers))
	}
}

// TestInterceptAgent: an intercept agent that runs, or that the kubelet
// has not reported running yet (its status lags behind an agent that
// answered), is found; one that failed, or that runs another job, never is.
func TestInterceptAgent(t *testing.T) {
	notReported := func(p *corev1.Pod) {
		withInterceptAgent("tether-inspect", 7342, 17000, 8080, &corev1.ContainerState{})(p)
		p.Status.EphemeralContainerStatuses = nil
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"running", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, running())), true},
		{"not reported yet", testPod(notReported), true},
		{"creating", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, waiting("ContainerCreating", ""))), true},
		{"image not pullable", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, waiting("ErrImagePull", "not found"))), false},
		{"exited", testPod(withInterceptAgent("tether-inspect", 7342, 17000, 8080, exited(1, "Error", "", time.Second))), false},
		{"a trace agent", testPod(withAgent("tether-inspect", image, 7342, false, nil)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := newCluster(t, clusterConfig{pod: tt.pod})
			a, ok, err := inspect.InterceptAgent(context.Background(), cs, tt.pod, func(string) {})
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.want {
				t.Fatalf("found = %v, want %v", ok, tt.want)
			}
			if ok && (a.Container != "tether-inspect" || string(a.Token) != "token-of-tether-inspect") {
				t.Errorf("agent %+v, want tether-inspect with its stored token", a)
			}
		})
	}
}
