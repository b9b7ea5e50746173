package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

func TestEnsure(t *testing.T) {
	trace := inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}
	capture := inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Job: agent.JobCapture}
	// agent is a reused agent, with its rotated token.
	agent := func(name string, port int, token string) inspect.Agent {
		return inspect.Agent{Pod: podName, PodUID: podUID, Container: name, Port: port, Token: []byte(token)}
	}
	// fresh is an agent whose bootstrap token, the one in its spec, is to
	// be rotated.
	fresh := func(name string, port int) inspect.Agent {
		return inspect.Agent{Pod: podName, PodUID: podUID, Container: name, Port: port, Token: []byte("bootstrap token of " + name), Bootstrap: true}
	}
	newAgent := func(name string, port int, root bool) added {
		job := "probe"
		if root {
			job = "capture"
		}
		return added{Name: name, Image: image, Args: fmt.Sprintf("--tunnel 127.0.0.1:%d --token-env TETHER_TOKEN --bootstrap-ttl 2m0s --serve %s", port, job),
			Root: root, MessagePolicy: corev1.TerminationMessageFallbackToLogsOnError}
	}
	tests := []struct {
		name string
		cfg  clusterConfig
		req  inspect.Request
		want result
		// wantErr: words the error must hold; it must be a user error
		// unless wantInternal.
		wantErr      []string
		wantInternal bool
		wantUpdates  int
	}{
		{
			name:        "first agent of a pod: tether-inspect on port 7342, non-root for a trace",
			cfg:         clusterConfig{pod: testPod()},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect", 7342), Added: []added{newAgent("tether-inspect", 7342, false)}},
			wantUpdates: 1,
		},
		{
			name: "trace reuses a running non-root agent, with its own token",
			cfg:  clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, running()))},
			req:  trace,
			want: result{Agent: agent("tether-inspect", 7342, "token-of-tether-inspect")},
		},
		{
			name:        "trace does not reuse a running capture agent, which serves no probe: adds a trace agent",
			cfg:         clusterConfig{pod: testPod(withAgent("tether-inspect", "agent:0", 7342, true, running()))},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, false)}},
			wantUpdates: 1,
		},
		{
			name: "trace reuses an agent of any image that serves probes",
			cfg:  clusterConfig{pod: testPod(withAgent("tether-inspect", "agent:0", 7342, false, running()))},
			req:  trace,
			want: result{Agent: agent("tether-inspect", 7342, "token-of-tether-inspect")},
		},
		{
			name:        "capture next to a trace agent adds a root agent on the next port",
			cfg:         clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, running()))},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, true)}},
			wantUpdates: 1,
		},
		{
			name: "running agent whose rotated token tether does not hold is not reused: its bootstrap token is used or expired",
			cfg: clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, running())),
				unstored: []string{"tether-inspect"}},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, false)}},
			wantUpdates: 1,
		},
		{
			name: "token Secret left by an earlier pod of the same name is not trusted",
			cfg: clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, running())),
				unstored: []string{"tether-inspect"}, secrets: []runtime.Object{storedToken("tether-inspect", "old", "uid-of-the-pod-before")}},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, false)}},
			wantUpdates: 1,
		},
		{
			name: "waits for an agent being added whose token is not rotated yet: its bootstrap token",
			cfg: clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, true, waiting("ContainerCreating", ""))),
				unstored: []string{"tether-inspect"}},
			req:  capture,
			want: result{Agent: fresh("tether-inspect", 7342)},
		},
		{
			name: "capture reuses the running root agent, not the non-root one",
			cfg: clusterConfig{pod: testPod(
				withAgent("tether-inspect", image, 7342, false, running()),
				withAgent("tether-inspect-2", image, 7343, true, running()))},
			req:  capture,
			want: result{Agent: agent("tether-inspect-2", 7343, "token-of-tether-inspect-2")},
		},
		{
			name: "agent that lost the port race before per-agent ports does not block",
			cfg: clusterConfig{pod: testPod(
				withAgent("tether-inspect", image, 7342, false, running()),
				withAgent("tether-inspect-2", image, 7342, true, exited(1, "Error", "", time.Second)))},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect-3", 7343), Added: []added{newAgent("tether-inspect-3", 7343, true)}},
			wantUpdates: 1,
		},
		{
			name: "agent whose port was taken does not block; its port is not tried again",
			cfg: clusterConfig{pod: testPod(
				withAgent("tether-inspect", image, 7342, true, exited(1, "Error", "tether-agent: listen tcp 127.0.0.1:7342: bind: address already in use", time.Second)))},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, true)}},
			wantUpdates: 1,
		},
		{
			name: "new port skips the pod's declared ports, --tunnel arguments and old agents' ports",
			cfg: clusterConfig{pod: testPod(
				func(p *corev1.Pod) {
					p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 7342})
					p.Spec.InitContainers = []corev1.Container{{Name: "tether-agent", Args: []string{"--tunnel=127.0.0.1:7344"}}}
				},
				withAgent("tether-inspect", image, 7343, false, exited(0, "Completed", "", time.Hour)))},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect-2", 7345), Added: []added{newAgent("tether-inspect-2", 7345, false)}},
			wantUpdates: 1,
		},
		{
			name: "new name skips every name in use",
			cfg: clusterConfig{pod: testPod(
				withAgent("tether-inspect", image, 7342, false, exited(0, "Completed", "", time.Hour)),
				withAgent("tether-inspect-2", image, 7343, false, exited(137, "OOMKilled", "", time.Hour)))},
			req:         trace,
			want:        result{Agent: fresh("tether-inspect-3", 7344), Added: []added{newAgent("tether-inspect-3", 7344, false)}},
			wantUpdates: 1,
		},
		{
			name: "waits for an agent of the same image being added, instead of adding one",
			cfg:  clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, true, waiting("ContainerCreating", "")))},
			req:  capture,
			want: result{Agent: agent("tether-inspect", 7342, "token-of-tether-inspect")},
		},
		{
			name: "conflict on the update: looks again and reuses the agent another client added",
			cfg: clusterConfig{pod: testPod(), conflicts: 1,
				meanwhile: withAgent("tether-inspect", image, 7342, false, running())},
			req:         trace,
			want:        result{Agent: agent("tether-inspect", 7342, "token-of-tether-inspect")},
			wantUpdates: 1,
		},
		{
			name:        "conflict on the update: tries again and adds",
			cfg:         clusterConfig{pod: testPod(), conflicts: 2},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect", 7342), Added: []added{newAgent("tether-inspect", 7342, true)}},
			wantUpdates: 3,
		},
		{
			name:         "conflict on every update: gives up",
			cfg:          clusterConfig{pod: testPod(), conflicts: 100},
			req:          trace,
			wantErr:      []string{"add ephemeral container tether-inspect to pod web", "modified"},
			wantInternal: true,
			wantUpdates:  5,
		},
		{
			name:    "no such pod",
			cfg:     clusterConfig{},
			req:     trace,
			wantErr: []string{`no pod "web" in namespace shop`},
		},
		{
			name:    "pod not running",
			cfg:     clusterConfig{pod: testPod(func(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} })},
			req:     trace,
			wantErr: []string{"pod web has no running container (phase Pending)"},
		},
		{
			name:    "container that does not exist",
			cfg:     clusterConfig{pod: testPod()},
			req:     inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Container: "nope"},
			wantErr: []string{`pod web has no container "nope"; containers: app`},
		},
		{
			name:        "new agent exits: kubelet reason, exit code and message",
			cfg:         clusterConfig{pod: testPod(), start: exited(1, "Error", "tether-agent: read token: boom", time.Second)},
			req:         capture,
			want:        result{Added: []added{newAgent("tether-inspect", 7342, true)}},
			wantErr:     []string{"tether-inspect (image agent:1) in pod web exited: Error (exit code 1)", "tether-agent: read token: boom", "--agent-image", "kubectl logs web -n shop -c tether-inspect"},
			wantUpdates: 1,
		},
		{
			name:        "new agent exits without a message: its last log lines",
			cfg:         clusterConfig{pod: testPod(), start: exited(2, "Error", "", time.Second), logs: "flag provided but not defined: -tunnel\nUsage of x"},
			req:         trace,
			want:        result{Added: []added{newAgent("tether-inspect", 7342, false)}},
			wantErr:     []string{"exited: Error (exit code 2)", "    flag provided but not defined: -tunnel\n    Usage of x"},
			wantUpdates: 1,
		},
		{
			name:        "new agent's image cannot be pulled",
			cfg:         clusterConfig{pod: testPod(), start: waiting("ErrImagePull", `pull "agent:1": not found`)},
			req:         trace,
			want:        result{Added: []added{newAgent("tether-inspect", 7342, false)}},
			wantErr:     []string{"cannot start: ErrImagePull", `pull "agent:1": not found`, "--agent-image"},
			wantUpdates: 1,
		},
		{
			name: "kubelet's warnings about a starting agent: reported before its status says so",
			cfg: clusterConfig{pod: testPod(), start: waiting("ContainerCreating", ""), events: []runtime.Object{
				warning("e1", "tether-inspect", "Failed", `Failed to pull image "agent:1": not found`),
				warning("e2", "tether-inspect", "Failed", "Error: ErrImagePull"),
				warning("e3", "tether-inspect", "Failed", "Error: ErrImagePull"),
				warning("e4", "tether-other", "Failed", "Error: not this container's"),
			}},
			req:         trace,
			want:        result{Added: []added{newAgent("tether-inspect", 7342, false)}},
			wantErr:     []string{"cannot start: ErrImagePull:\n    Failed to pull image \"agent:1\": not found\n    Error: ErrImagePull\ncheck that the image exists"},
			wantUpdates: 1,
		},
		{
			name:    "agent of the same image and privilege that failed to start is not added again",
			cfg:     clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, true, exited(1, "Error", "boom", time.Second)))},
			req:     capture,
			wantErr: []string{"exited: Error (exit code 1)", "boom", "does not add the same agent again"},
		},
		{
			name:    "agent that exits at once without an error is not added again either",
			cfg:     clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, exited(0, "Completed", "", time.Second)))},
			req:     trace,
			wantErr: []string{"exited: Completed (exit code 0)", "does not add the same agent again"},
		},
		{
			name:    "image that cannot be pulled is not tried again, whatever the privilege",
			cfg:     clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false, waiting("ImagePullBackOff", "Back-off pulling image")))},
			req:     capture,
			wantErr: []string{"cannot start: ImagePullBackOff", "Back-off pulling image"},
		},
		{
			name:        "failed agent of another image does not block",
			cfg:         clusterConfig{pod: testPod(withAgent("tether-inspect", "agent:0", 7342, true, exited(1, "Error", "boom", time.Second)))},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, true)}},
			wantUpdates: 1,
		},
		{
			name: "non-root agent refused by the runtime does not block a root agent",
			cfg: clusterConfig{pod: testPod(withAgent("tether-inspect", image, 7342, false,
				waiting("CreateContainerConfigError", "container has runAsNonRoot and image will run as root")))},
			req:         capture,
			want:        result{Agent: fresh("tether-inspect-2", 7343), Added: []added{newAgent("tether-inspect-2", 7343, true)}},
			wantUpdates: 1,
		},
		{
			name:        "PodSecurity forbids the root agent",
			cfg:         clusterConfig{pod: testPod(), updateErr: apierrors.NewForbidden(podsGVR.GroupResource(), podName, errors.New(`violates PodSecurity "restricted:latest"`))},
			req:         capture,
			wantErr:     []string{"PodSecurity level forbids the capture agent", "tether trace"},
			wantUpdates: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.cfg)
			var before []string
			if tt.cfg.pod != nil {
				for _, ec := range tt.cfg.pod.Spec.EphemeralContainers {
					before = append(before, ec.Name)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			a, err := inspect.Ensure(ctx, c, tt.req, func(string) {})
			if a.Bootstrap && string(a.Token) == specToken(t, c, a.Container) {
				a.Token = []byte("bootstrap token of " + a.Container)
			}
			got := result{Agent: a, Added: addedAgents(t, c, before, tt.cfg.meanwhile)}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Ensure (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantUpdates, c.updates); diff != "" {
				t.Errorf("ephemeralcontainers updates (-want +got):\n%s", diff)
			}
			checkErr(t, err, tt.wantErr, tt.wantInternal)
		})
	}
}
