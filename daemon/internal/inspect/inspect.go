// Package inspect runs tether's agent inside a running pod as an ephemeral
// container, for the inspection commands: the pod is not restarted and its
// workload is not changed. The agent shares the pod's network namespace and
// is reached through the same tunnel as the sidecar agent, on its own
// loopback port.
package inspect

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Names and ports of the inspection agent.
const (
	ContainerPrefix = "tether-inspect"
	// TunnelPort is the first agent's loopback port; each agent added to a
	// pod gets the next port free, recorded in its --tunnel argument.
	TunnelPort = 7342
	tokenEnv   = "TETHER_TOKEN"
	// updateAttempts bounds the retries when the pod changes between
	// reading it and adding the agent.
	updateAttempts = 5
)

// Request names the pod to inspect.
type Request struct {
	Namespace, Pod string
	// Container, when set, is the container whose processes the agent sees.
	Container  string
	AgentImage string
	// Job is the one thing the agent does: agent.JobProbe (trace, the
	// default when empty: non-root without capabilities), agent.JobIntercept
	// (intercept --no-restart: non-root, in front of Forward), agent.JobCapture
	// (root with the runtime's CAP_NET_RAW) or agent.JobRun (tether run and
	// env: non-root without capabilities).
	Job agent.Job
	// RunAsUser and RunAsGroup, when set, are the user and group the agent
	// runs as (the run job: the target process's, to read its environment
	// and root; 0 runs it as root with the runtime's default capabilities).
	RunAsUser, RunAsGroup *int64
	// Forward is the intercept job's LISTEN:APP (agent.JobIntercept): the
	// agent accepts the Service's traffic on port LISTEN of the pod and
	// passes it to the app's port APP. An agent is reused only with the
	// same Forward; LISTEN is never given to the agent's tunnel.
	Forward [2]int
	// Args are more arguments for a new agent (the intercept job's
	// recording flags).
	Args []string
	// Early: return a new agent as soon as its container is added, before
	// the kubelet reports it running (a second or more after it runs):
	// the caller dials it until it answers, and asks Failed why not.
	Early bool
}

// job is the one thing the agent for req does.
func (r Request) job() agent.Job {
	if r.Job == "" {
		return agent.JobProbe
	}
	return r.Job
}

// netRaw: the agent runs as root to use CAP_NET_RAW.
func (r Request) netRaw() bool { return r.job() == agent.JobCapture }

// root: the agent runs as root with the runtime's default capabilities
// (capture, or a run agent for a process of root).
func (r Request) root() bool { return r.netRaw() || (r.RunAsUser != nil && *r.RunAsUser == 0) }

// Agent is a running inspection agent.
type Agent struct {
	Pod, Container string
	PodUID         types.UID
	// Port is the loopback port of the pod the agent listens on.
	Port  int
	Token []byte
	// Bootstrap: Token is the agent's bootstrap token, good for one tunnel
	// within BootstrapTTL of its start. The caller rotates it on that
	// tunnel and keeps the new one with StoreToken.
	Bootstrap bool
}

// Ensure returns a running inspection agent in the pod: one already
// running with the capability asked for, else one being started with the
// same image, else a new ephemeral container on a port of its own. It
// refuses, with the reason, to add an agent that failed on this pod
// before. progress gets one line per step.
func Ensure(ctx context.Context, cs kubernetes.Interface, req Request, progress func(string)) (Agent, error) {
	for attempt := 1; ; attempt++ {
		pod, err := runningPod(ctx, cs, req)
		if err != nil {
			return Agent{}, err
		}
		stored, err := storedTokens(ctx, cs, pod, podAgents(pod), progress)
		if err != nil {
			return Agent{}, err
		}
		pl := decide(pod, req, stored)
		if pl.action == add && req.job() == agent.JobIntercept {
			// A second agent could not listen on the port the running one
			// holds: say why the running one is not used.
			for _, a := range podAgents(pod) {
				if a.forward == req.Forward && a.running() {
					return Agent{}, errdefs.User("pod %s runs tether's intercept agent %s on port %d, but tether cannot read its token "+
						"(Secret %s is missing, or you may not get it): an intercept --no-restart needs get on secrets (docs/intercept.md)",
						req.Pod, a.name, req.Forward[0], TokenSecretName(req.Pod, a.name))
				}
			}
		}
		switch pl.action {
		case reuse:
			return agentOf(pod, pl.agent, stored), nil
		case await:
			progress(fmt.Sprintf("waiting for the agent %s being added to pod %s", pl.agent.name, req.Pod))
			a, err := waitRunning(ctx, cs, req.Namespace, req.Pod, pl.agent.name, progress)
			if err != nil {
				return Agent{}, err
			}
			// Whoever added it may have rotated its token meanwhile.
			if stored, err = storedTokens(ctx, cs, pod, []agentState{a}, progress); err != nil {
				return Agent{}, err
			}
			return agentOf(pod, a, stored), nil
		case refuse:
			return Agent{}, failure(ctx, cs, req.Namespace, req.Pod, pl.agent)
		}
		// A token of its own for every agent: never shared with another
		// agent, pod or namespace.
		token := NewToken()
		pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, newContainer(req, pl.name, pl.port, token))
		progress(fmt.Sprintf("adding the agent to pod %s as ephemeral container %s on port %d (the pod is not restarted)", req.Pod, pl.name, pl.port))
		_, err = cs.CoreV1().Pods(req.Namespace).UpdateEphemeralContainers(ctx, req.Pod, pod, metav1.UpdateOptions{FieldManager: "tether"})
		if apierrors.IsConflict(err) && attempt < updateAttempts {
			progress(fmt.Sprintf("pod %s changed meanwhile; looking again", req.Pod))
			continue
		}
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "PodSecurity") && req.job() == agent.JobRun {
			return Agent{}, errdefs.User("namespace %s's PodSecurity level forbids the agent that reads the process, which runs as the process's user%s: %v; "+
				"read the spec instead (--source spec)", req.Namespace, rootNote(req), err)
		}
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "PodSecurity") {
			return Agent{}, errdefs.User("namespace %s's PodSecurity level forbids the capture agent, which runs as root to use CAP_NET_RAW: %v; "+
				"capture in a namespace at the baseline or privileged level, or use `tether trace`, which needs no capability", req.Namespace, err)
		}
		if err != nil {
			return Agent{}, fmt.Errorf("add ephemeral container %s to pod %s: %w", pl.name, req.Pod, err)
		}
		if req.Early {
			return agentOf(pod, agentState{name: pl.name, port: pl.port, token: token}, nil), nil
		}
		a, err := waitRunning(ctx, cs, req.Namespace, req.Pod, pl.name, progress)
		if err != nil {
			return Agent{}, err
		}
		return agentOf(pod, a, nil), nil
	}
}

// rootNote says, for a root run agent, why it is root.
func rootNote(req Request) string {
	if req.root() {
		return " (root, with the runtime's default capabilities, as the process is root)"
	}
	return ""
}

// runningPod reads the pod and checks that there is something to inspect.
func runningPod(ctx context.Context, cs kubernetes.Interface, req Request) (*corev1.Pod, error) {
	pod, err := cs.CoreV1().Pods(req.Namespace).Get(ctx, req.Pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errdefs.User("no pod %q in namespace %s (`kubectl get pods -n %s` lists them)", req.Pod, req.Namespace, req.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("read pod %s: %w", req.Pod, err)
	}
	if pod.Status.Phase != corev1.PodRunning || !anyRunning(pod) {
		return nil, errdefs.User("pod %s has no running container (phase %s): there is nothing to inspect", req.Pod, pod.Status.Phase)
	}
	if req.Container != "" && !hasContainer(pod, req.Container) {
		return nil, errdefs.User("pod %s has no container %q; containers: %s", req.Pod, req.Container, containerNames(pod))
	}
	return pod, nil
}

// agentOf returns the Agent for a running agentState: with its rotated
// token when stored holds one, else with the bootstrap token of its spec.
func agentOf(pod *corev1.Pod, a agentState, stored map[string][]byte) Agent {
	ag := Agent{Pod: pod.Name, PodUID: pod.UID, Container: a.name, Port: a.port, Token: stored[a.name]}
	if len(ag.Token) == 0 {
		ag.Token, ag.Bootstrap = a.token, true
	}
	return ag
}

// newContainer is the agent's ephemeral container.
func newContainer(req Request, name string, port int, token []byte) corev1.EphemeralContainer {
	serve := string(req.job())
	if req.job() == agent.JobIntercept {
		// The pod's resolv.conf and DNS answers too, for intercept -- CMD
		// (the probe job's calls; whoever holds the token already gets
		// the pod's traffic).
		serve = agent.JoinJobs([]agent.Job{agent.JobIntercept, agent.JobProbe})
	}
	args := []string{"--tunnel", fmt.Sprintf("127.0.0.1:%d", port), "--token-env", tokenEnv,
		"--bootstrap-ttl", BootstrapTTL.String(), "--serve", serve}
	if req.job() == agent.JobIntercept {
		args = append(args, "--forward", fmt.Sprintf("%d:%d", req.Forward[0], req.Forward[1]))
	}
	args = append(args, req.Args...)
	return corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name:            name,
		Image:           req.AgentImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            args,
		Env: []corev1.EnvVar{
			// A literal value, not a secretKeyRef: the kubelet does not sync
			// Secrets referenced only by ephemeral containers ("failed to
			// sync secret cache", seen on k3s v1.32). Whoever may read the
			// pod's spec reads it, so it is a bootstrap token: good for one
			// tunnel within BootstrapTTL, then rotated (token.go).
			{Name: tokenEnv, Value: string(token)},
			{Name: "POD_NAME", Value: req.Pod},
			{Name: "POD_NAMESPACE", Value: req.Namespace},
		},
		// An agent that fails leaves its last log lines in its status,
		// readable without the pods/log permission.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          securityContext(req),
	}, TargetContainerName: req.Container}
}

func securityContext(req Request) *corev1.SecurityContext {
	var sc *corev1.SecurityContext
	if req.root() {
		// Root with the runtime's default capabilities, which include
		// NET_RAW on containerd and Docker: the baseline Pod Security level
		// allows that, but not adding capabilities explicitly.
		sc = agentspec.RootSecurityContext()
	} else {
		sc = agentspec.SecurityContext()
		sc.RunAsUser = req.RunAsUser
	}
	sc.RunAsGroup = req.RunAsGroup
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
