package inspect_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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

// A fake cluster and pods for the tests of Ensure, Explain and tokens.

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
