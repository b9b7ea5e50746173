package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/internal/errdefs"
)

const (
	ns, podName = "shop", "web"
	image       = "agent:1"
	podUID      = "uid-of-web"
)

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// podOpt changes the test pod.
type podOpt func(*corev1.Pod)

// testPod is a running pod with one container, app, declaring port 8080.
func testPod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns, UID: podUID},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// withAgent adds an inspection container as an earlier tether left it:
// listening on port, a root capture agent or a trace agent, in state (nil:
// not reported yet).
func withAgent(name, img string, port int, root bool, state *corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		sc := &corev1.SecurityContext{}
		job := "probe"
		if root {
			uid := int64(0)
			sc.RunAsUser, job = &uid, "capture"
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: name, Image: img, SecurityContext: sc,
				Args: []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", port), "--token-env", "TETHER_TOKEN", "--bootstrap-ttl", "2m0s", "--serve", job},
				Env:  []corev1.EnvVar{{Name: "TETHER_TOKEN", Value: "token-of-" + name}},
			}})
		if state != nil {
			p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
				corev1.ContainerStatus{Name: name, Image: img, State: *state})
		}
	}
}

// warning is a kubelet's warning event about the pod's container.
func warning(name, container, reason, msg string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: podName, Namespace: ns,
			FieldPath: fmt.Sprintf("spec.ephemeralContainers{%s}", container)},
		Type: corev1.EventTypeWarning, Reason: reason, Message: msg,
	}
}

func running() *corev1.ContainerState {
	return &corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func waiting(reason, msg string) *corev1.ContainerState {
	return &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

// exited is a terminated state after the agent ran for ran.
func exited(code int32, reason, msg string, ran time.Duration) *corev1.ContainerState {
	start := metav1.NewTime(time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC))
	return &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
		Message: msg, StartedAt: start, FinishedAt: metav1.NewTime(start.Add(ran))}}
}

// cluster is a fake clientset whose "kubelet" gives every inspection
// container that is not reported yet, or still being created, the state
// start once a Get has returned it (so the first read of a pod still sees
// it pending). Updates of the ephemeralcontainers subresource fail with a
// conflict conflicts times, after meanwhile changed the stored pod.
type cluster struct {
	*fake.Clientset
	updates int
}

type clusterConfig struct {
	pod       *corev1.Pod
	start     *corev1.ContainerState
	conflicts int
	meanwhile podOpt
	updateErr error
	logs      string
	events    []runtime.Object
	// unstored names agents of pod whose rotated token is not stored;
	// every other agent of pod and meanwhile has "token-of-<name>".
	unstored []string
	secrets  []runtime.Object
}

// storedToken is the Secret holding the rotated token of an agent of the
// test pod, as a daemon that rotated it left it.
func storedToken(container, token string, owner types.UID) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: inspect.TokenSecretName(podName, container), Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: podName, UID: owner}}},
		Data: map[string][]byte{"token": []byte(token)},
	}
}

func newCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	var objs []runtime.Object
	if cfg.pod != nil {
		objs = append(objs, cfg.pod)
		withMeanwhile := cfg.pod.DeepCopy()
		if cfg.meanwhile != nil {
			cfg.meanwhile(withMeanwhile)
		}
		for _, ec := range withMeanwhile.Spec.EphemeralContainers {
			if !slices.Contains(cfg.unstored, ec.Name) {
				objs = append(objs, storedToken(ec.Name, "token-of-"+ec.Name, podUID))
			}
		}
	}
	objs = append(objs, cfg.events...)
	objs = append(objs, cfg.secrets...)
	c := &cluster{Clientset: fake.NewClientset(objs...)}
	start := cfg.start
	if start == nil {
		start = running()
	}
	tracker := c.Tracker()
	c.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetSubresource() {
		case "log":
			return true, &runtime.Unknown{Raw: []byte(cfg.logs)}, nil
		case "":
		default:
			return false, nil, nil
		}
		obj, err := tracker.Get(podsGVR, ns, a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod).DeepCopy()
		reported := map[string]bool{}
		for i, s := range p.Status.EphemeralContainerStatuses {
			reported[s.Name] = true
			if w := s.State.Waiting; w != nil && w.Reason == "ContainerCreating" {
				p.Status.EphemeralContainerStatuses[i].State = *start
			}
		}
		for _, ec := range p.Spec.EphemeralContainers {
			if !reported[ec.Name] {
				p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
					corev1.ContainerStatus{Name: ec.Name, Image: ec.Image, State: *start})
			}
		}
		return true, obj, tracker.Update(podsGVR, p, ns)
	})
	c.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "ephemeralcontainers" {
			return false, nil, nil
		}
		c.updates++
		if cfg.updateErr != nil {
			return true, nil, cfg.updateErr
		}
		if c.updates <= cfg.conflicts {
			if cfg.meanwhile != nil {
				obj, _ := tracker.Get(podsGVR, ns, podName)
				p := obj.(*corev1.Pod).DeepCopy()
				cfg.meanwhile(p)
				if err := tracker.Update(podsGVR, p, ns); err != nil {
					t.Fatal(err)
				}
			}
			return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), podName, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	return c
}

// added describes an agent container Ensure added.
type added struct {
	Name, Image, Args string
	Root              bool
	MessagePolicy     corev1.TerminationMessagePolicy
}

type result struct {
	Agent inspect.Agent
	Added []added
}

func TestEnsure(t *testing.T) {
	trace := inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}
	capture := inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, NetRaw: true}
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

// specToken returns the token in the spec of the stored pod's container.
func specToken(t *testing.T, c *cluster, container string) string {
	t.Helper()
	obj, err := c.Tracker().Get(podsGVR, ns, podName)
	if err != nil {
		t.Fatal(err)
	}
	for _, ec := range obj.(*corev1.Pod).Spec.EphemeralContainers {
		for _, e := range ec.Env {
			if ec.Name == container && e.Name == "TETHER_TOKEN" {
				return e.Value
			}
		}
	}
	return ""
}

// addedAgents returns the inspection containers of the stored pod that
// were neither in before nor added by meanwhile.
func addedAgents(t *testing.T, c *cluster, before []string, meanwhile podOpt) []added {
	t.Helper()
	obj, err := c.Tracker().Get(podsGVR, ns, podName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, n := range before {
		old[n] = true
	}
	if meanwhile != nil {
		p := testPod()
		meanwhile(p)
		for _, ec := range p.Spec.EphemeralContainers {
			old[ec.Name] = true
		}
	}
	var out []added
	for _, ec := range obj.(*corev1.Pod).Spec.EphemeralContainers {
		if old[ec.Name] {
			continue
		}
		sc := ec.SecurityContext
		out = append(out, added{Name: ec.Name, Image: ec.Image, Args: strings.Join(ec.Args, " "),
			Root: sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0, MessagePolicy: ec.TerminationMessagePolicy})
	}
	return out
}

func checkErr(t *testing.T, err error, want []string, internal bool) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("Ensure: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Ensure succeeded, want an error saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
	if user := errors.Is(err, errdefs.ErrUser); user == internal {
		t.Errorf("user error: %v, want %v: %v", user, !internal, err)
	}
}

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

// TestTokens: every agent gets a token of its own, in its spec; no Secret
// is made before the token is rotated, and none is shared; StoreToken
// keeps the rotated token in a Secret the pod owns, which the next Ensure
// reads. Before, one token per namespace, in the Secret tether-inspect,
// opened every agent of the namespace for as long as it ran.
func TestTokens(t *testing.T) {
	c := newCluster(t, clusterConfig{pod: testPod()})
	ctx := t.Context()
	tr, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, NetRaw: true}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Bootstrap || !cp.Bootstrap || string(tr.Token) == string(cp.Token) || len(tr.Token) < 32 {
		t.Fatalf("two new agents: bootstrap %v/%v, tokens %q and %q; want two different bootstrap tokens", tr.Bootstrap, cp.Bootstrap, tr.Token, cp.Token)
	}
	secrets, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Fatalf("Ensure made Secrets %v; want none until a token is rotated", secrets.Items)
	}

	rotated := []byte("rotated-token-0123456789abcdef")
	if err := inspect.StoreToken(ctx, c, ns, tr, rotated); err != nil {
		t.Fatal(err)
	}
	s, err := c.CoreV1().Secrets(ns).Get(ctx, "tether-inspect.web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: podName, UID: podUID}}
	if diff := cmp.Diff(wantOwner, s.OwnerReferences); diff != "" {
		t.Errorf("owner of the token Secret (-want +got):\n%s", diff)
	}
	if s.Immutable == nil || !*s.Immutable || s.Labels["tether.dev/inspect-token"] != "true" {
		t.Errorf("token Secret: immutable %v, labels %v; want immutable and labelled", s.Immutable, s.Labels)
	}
	again, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	want := inspect.Agent{Pod: podName, PodUID: podUID, Container: tr.Container, Port: tr.Port, Token: rotated}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Ensure after the rotation (-want +got):\n%s", diff)
	}
}
