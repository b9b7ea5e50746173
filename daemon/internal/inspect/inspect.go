// Package inspect runs tether's agent inside a running pod as an ephemeral
// container, for the inspection commands: the pod is not restarted and its
// workload is not changed. The agent shares the pod's network namespace and
// is reached through the same tunnel as the sidecar agent, on its own
// loopback port.
package inspect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Names and ports of the inspection agent.
const (
	ContainerPrefix = "tether-inspect"
	TunnelPort      = 7342
	SecretName      = "tether-inspect"
	tokenKey        = "token"
)

// Request names the pod to inspect.
type Request struct {
	Namespace, Pod string
	// Container, when set, is the container whose processes the agent sees.
	Container  string
	AgentImage string
	// NetRaw asks for CAP_NET_RAW (packet capture).
	NetRaw bool
}

// Agent is a running inspection agent.
type Agent struct {
	Pod, Container string
	Token          []byte
}

// Ensure returns a running inspection agent in the pod, adding one as an
// ephemeral container when none runs. progress gets one line per step.
func Ensure(ctx context.Context, cs kubernetes.Interface, req Request, progress func(string)) (Agent, error) {
	pod, err := cs.CoreV1().Pods(req.Namespace).Get(ctx, req.Pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Agent{}, errdefs.User("no pod %q in namespace %s (`kubectl get pods -n %s` lists them)", req.Pod, req.Namespace, req.Namespace)
	}
	if err != nil {
		return Agent{}, err
	}
	if pod.Status.Phase != corev1.PodRunning || !anyRunning(pod) {
		return Agent{}, errdefs.User("pod %s has no running container (phase %s): there is nothing to inspect", req.Pod, pod.Status.Phase)
	}
	if req.Container != "" && !hasContainer(pod, req.Container) {
		return Agent{}, errdefs.User("pod %s has no container %q; containers: %s", req.Pod, req.Container, containerNames(pod))
	}
	token, err := ensureToken(ctx, cs, req.Namespace)
	if err != nil {
		return Agent{}, err
	}
	if name := runningAgent(pod, req.NetRaw); name != "" {
		return Agent{Pod: req.Pod, Container: name, Token: token}, nil
	}
	name := nextName(pod)
	ec := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name:            name,
		Image:           req.AgentImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", TunnelPort), "--token-env", "TETHER_TOKEN"},
		Env: []corev1.EnvVar{
			// A literal value, not a secretKeyRef: the kubelet does not sync
			// Secrets referenced only by ephemeral containers ("failed to
			// sync secret cache", seen on k3s v1.32). The token is thus
			// readable by whoever may read the pod's spec; see docs/NOTES.md.
			{Name: "TETHER_TOKEN", Value: string(token)},
			{Name: "POD_NAME", Value: req.Pod},
			{Name: "POD_NAMESPACE", Value: req.Namespace},
		},
		SecurityContext: securityContext(req.NetRaw),
	}, TargetContainerName: req.Container}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
	progress(fmt.Sprintf("adding the agent to pod %s as ephemeral container %s (the pod is not restarted)", req.Pod, name))
	if _, err := cs.CoreV1().Pods(req.Namespace).UpdateEphemeralContainers(ctx, req.Pod, pod, metav1.UpdateOptions{FieldManager: "tether"}); err != nil {
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "PodSecurity") {
			return Agent{}, errdefs.User("namespace %s's PodSecurity level forbids the capture agent, which runs as root to use CAP_NET_RAW: %v; "+
				"capture in a namespace at the baseline or privileged level, or use `tether trace`, which needs no capability", req.Namespace, err)
		}
		return Agent{}, fmt.Errorf("add ephemeral container: %w", err)
	}
	if err := waitRunning(ctx, cs, req.Namespace, req.Pod, name, progress); err != nil {
		return Agent{}, err
	}
	return Agent{Pod: req.Pod, Container: name, Token: token}, nil
}

func securityContext(netRaw bool) *corev1.SecurityContext {
	no, yes := false, true
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if netRaw {
		// Root with the runtime's default capabilities, which include
		// NET_RAW on containerd and Docker: the baseline Pod Security level
		// allows that, but not adding capabilities explicitly.
		root := int64(0)
		sc.RunAsUser, sc.RunAsNonRoot = &root, &no
	} else {
		sc.RunAsNonRoot = &yes
		sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	}
	return sc
}

func anyRunning(p *corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running != nil {
			return true
		}
	}
	return false
}

func hasContainer(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func containerNames(p *corev1.Pod) string {
	var n []string
	for _, c := range p.Spec.Containers {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

// runningAgent returns a running inspection container with the needed
// capability, or "".
func runningAgent(p *corev1.Pod, netRaw bool) string {
	running := map[string]bool{}
	for _, s := range p.Status.EphemeralContainerStatuses {
		running[s.Name] = s.State.Running != nil
	}
	for _, c := range p.Spec.EphemeralContainers {
		if !strings.HasPrefix(c.Name, ContainerPrefix) || !running[c.Name] {
			continue
		}
		root := c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0
		if root || !netRaw {
			return c.Name
		}
	}
	return ""
}

// nextName returns an ephemeral container name not used yet: ephemeral
// containers can be neither removed nor restarted.
func nextName(p *corev1.Pod) string {
	used := map[string]bool{}
	for _, c := range p.Spec.EphemeralContainers {
		used[c.Name] = true
	}
	name := ContainerPrefix
	for i := 2; used[name]; i++ {
		name = fmt.Sprintf("%s-%d", ContainerPrefix, i)
	}
	return name
}

func ensureToken(ctx context.Context, cs kubernetes.Interface, ns string) ([]byte, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, SecretName, metav1.GetOptions{})
	if err == nil {
		return s.Data[tokenKey], nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read the inspection token: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := []byte(hex.EncodeToString(raw))
	_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Labels: map[string]string{"tether.dev/inspect-token": "true"}},
		Data:       map[string][]byte{tokenKey: token},
	}, metav1.CreateOptions{FieldManager: "tether"})
	if apierrors.IsAlreadyExists(err) {
		return ensureToken(ctx, cs, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("create the inspection token: %w", err)
	}
	return token, nil
}

// waitRunning waits for the ephemeral container to run, failing fast when
// it cannot start.
func waitRunning(ctx context.Context, cs kubernetes.Interface, ns, pod, name string, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start, last := time.Now(), time.Time{}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, s := range p.Status.EphemeralContainerStatuses {
			if s.Name != name {
				continue
			}
			if s.State.Running != nil {
				return nil
			}
			if w := s.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
				return errdefs.User("the inspection agent in pod %s cannot start: %s: %s", pod, w.Reason, w.Message)
			}
			if t := s.State.Terminated; t != nil {
				return fmt.Errorf("the inspection agent in pod %s exited: %s (exit %d): %s (see `kubectl logs %s -c %s`)",
					pod, t.Reason, t.ExitCode, t.Message, pod, name)
			}
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for the agent to run in pod %s, %s", pod, time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the inspection agent did not start in pod %s: %w", pod, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}
