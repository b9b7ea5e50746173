package inspect

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
)

// agentState is what the pod's spec and status say of one inspection
// container.
type agentState struct {
	name, image string
	// port is the loopback port the agent listens on, from its --tunnel
	// argument (TunnelPort for agents that predate per-agent ports).
	port int
	// root: the agent runs as root with the runtime's default
	// capabilities, NET_RAW among them.
	root bool
	// uid and gid the agent runs as, when its spec sets them; target is
	// the container whose processes it sees.
	uid, gid *int64
	target   string
	// jobs: what the agent serves, from its --serve argument (all of
	// them for agents started without one).
	jobs  []agent.Job
	token []byte
	// forward is the agent's --forward LISTEN:APP (the intercept job's
	// port; zero for the other jobs).
	forward [2]int
	// status is nil until the kubelet reports the container.
	status *corev1.ContainerStatus
}

func (a agentState) running() bool { return a.status != nil && a.status.State.Running != nil }

// pending: the kubelet has not reported a failure yet and the agent does
// not run yet (or is reported for the first time).
func (a agentState) pending() bool {
	if a.status == nil {
		return true
	}
	if w := a.status.State.Waiting; w != nil {
		return w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing"
	}
	return a.status.State.Running == nil && a.status.State.Terminated == nil
}

// imageFailure: the container cannot start because of its image, whatever
// its other settings.
func (a agentState) imageFailure() bool {
	if a.status == nil || a.status.State.Waiting == nil {
		return false
	}
	switch a.status.State.Waiting.Reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
		"ImageInspectError", "RegistryUnavailable", "SignatureValidationFailed":
		return true
	}
	return false
}

// startupWindow: an agent that exits this soon after it started failed to
// start; one that ran longer failed at its work (or was stopped).
const startupWindow = 30 * time.Second

// failedToStart: the container cannot start (waiting with a reason other
// than creation) or exited right after it started, with an error or not:
// an agent serves until the pod ends.
func (a agentState) failedToStart() bool {
	if a.status == nil || a.running() || a.pending() {
		return false
	}
	if a.status.State.Waiting != nil {
		return true
	}
	t := a.status.State.Terminated
	if t.StartedAt.IsZero() || t.FinishedAt.IsZero() {
		return true
	}
	return t.FinishedAt.Sub(t.StartedAt.Time) < startupWindow
}

// portConflict: the agent failed because its port was taken, which a new
// agent on another port does not repeat.
func (a agentState) portConflict(earlier []agentState) bool {
	if t := a.status.State.Terminated; t != nil && strings.Contains(t.Message, "address already in use") {
		return true
	}
	// Agents before per-agent ports all listened on TunnelPort: a second
	// one could not bind it and exited without a message.
	for _, e := range earlier {
		if e.port == a.port {
			return true
		}
	}
	return false
}

// podAgents returns the pod's inspection containers in the spec's order.
func podAgents(p *corev1.Pod) []agentState {
	status := map[string]*corev1.ContainerStatus{}
	for i := range p.Status.EphemeralContainerStatuses {
		s := &p.Status.EphemeralContainerStatuses[i]
		status[s.Name] = s
	}
	var out []agentState
	for _, c := range p.Spec.EphemeralContainers {
		if !strings.HasPrefix(c.Name, ContainerPrefix) {
			continue
		}
		port, ok := tunnelPort(c.Args)
		if !ok {
			port = TunnelPort
		}
		a := agentState{name: c.Name, image: c.Image, port: port, status: status[c.Name], target: c.TargetContainerName,
			root: c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0}
		if sc := c.SecurityContext; sc != nil {
			a.uid, a.gid = sc.RunAsUser, sc.RunAsGroup
		}
		a.jobs = agent.AllJobs
		if v, ok := argValue(c.Args, "--serve"); ok {
			if jobs, err := agent.ParseJobs(v); err == nil {
				a.jobs = jobs
			}
		}
		if v, ok := argValue(c.Args, "--forward"); ok {
			a.forward, _ = parseForward(v)
		}
		for _, e := range c.Env {
			if e.Name == tokenEnv {
				a.token = []byte(e.Value)
			}
		}
		out = append(out, a)
	}
	return out
}

// tunnelPort reads the port of a --tunnel HOST:PORT argument.
func tunnelPort(args []string) (int, bool) {
	v, ok := argValue(args, "--tunnel")
	if !ok {
		return 0, false
	}
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return n, err == nil
}

// parseForward reads a --forward LISTEN:APP value.
func parseForward(v string) ([2]int, bool) {
	l, r, ok := strings.Cut(v, ":")
	if !ok {
		return [2]int{}, false
	}
	ln, err1 := strconv.Atoi(l)
	rn, err2 := strconv.Atoi(r)
	if err1 != nil || err2 != nil {
		return [2]int{}, false
	}
	return [2]int{ln, rn}, true
}

// argValue returns the value of the first flag --name VALUE or
// --name=VALUE in args.
func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		switch {
		case a == flag && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, flag+"="):
			return strings.TrimPrefix(a, flag+"="), true
		}
	}
	return "", false
}

// fits: the agent can do req's work (capture needs root as well; the run
// job sees the target container's processes as the user asked for).
func (a agentState) fits(req Request) bool {
	if !slices.Contains(a.jobs, req.job()) || (!a.root && req.netRaw()) {
		return false
	}
	if req.job() == agent.JobIntercept {
		// The intercept job listens where the Service sends its traffic.
		return a.forward == req.Forward
	}
	if req.job() == agent.JobRun {
		// Reading a process needs its container and user; dialing (tether
		// run's connections) any run agent.
		return (req.Container == "" || a.target == req.Container) && a.sameUser(req)
	}
	return true
}

// sameUser: the agent runs as the user and group req asks for, where req
// asks for one.
func (a agentState) sameUser(req Request) bool {
	same := func(have, want *int64) bool { return want == nil || (have != nil && *have == *want) }
	return same(a.uid, req.RunAsUser) && same(a.gid, req.RunAsGroup)
}

// action is what Ensure does about a pod.
type action int

const (
	reuse  action = iota // an agent runs that can do the work
	await                // an agent that can do the work is starting
	refuse               // an agent like the one to add failed to start
	add                  // add a new agent
)

// plan is Ensure's decision: the agent to reuse, wait for or report, or
// the name and port of the agent to add.
type plan struct {
	action action
	agent  agentState
	name   string
	port   int
}

// decide picks what Ensure does, from the pod and the rotated tokens
// stored for its agents: reuse a running agent that serves the job (trace:
// probe, capture: capture, run and env: run) with the needed capability, whose rotated token tether holds (any other running agent's bootstrap
// token is used or expired); wait for one being started with the same
// image; report the failure of an agent that a new one would repeat (same
// image, and either an image failure or the same privilege, and not a
// taken port); else add one on a port of its own.
func decide(p *corev1.Pod, req Request, stored map[string][]byte) plan {
	agents := podAgents(p)
	for _, a := range agents {
		if a.running() && a.fits(req) && len(stored[a.name]) > 0 {
			return plan{action: reuse, agent: a}
		}
	}
	for _, a := range agents {
		if a.pending() && a.image == req.AgentImage && a.fits(req) {
			return plan{action: await, agent: a}
		}
	}
	for i, a := range agents {
		if a.image != req.AgentImage || !a.failedToStart() || a.portConflict(agents[:i]) {
			continue
		}
		if a.imageFailure() || (a.root == req.root() && a.sameUser(req)) {
			return plan{action: refuse, agent: a}
		}
	}
	return plan{action: add, name: nextName(p), port: freePort(p, agents, req.Forward[0])}
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

// freePort returns the lowest port from TunnelPort up that no inspection
// agent was ever given (a port that failed once is not tried again) and
// that no container of the pod declares or passes as --tunnel or as
// --forward's listening port, nor reserved (an intercept agent's port).
func freePort(p *corev1.Pod, agents []agentState, reserved int) int {
	used := UsedPorts(p)
	used[reserved] = true
	for _, a := range agents {
		used[a.port] = true
	}
	port := TunnelPort
	for used[port] {
		port++
	}
	return port
}

// InterceptAgentDied reports whether an intercept agent (agent.JobIntercept)
// of the pod has terminated and none runs or is starting: the pod lost
// its agent, and tether does not add another to it while it runs (an
// agent that keeps dying would pile up ephemeral containers, which
// Kubernetes never removes).
func InterceptAgentDied(p *corev1.Pod) (string, bool) {
	died := ""
	for _, a := range podAgents(p) {
		if !slices.Contains(a.jobs, agent.JobIntercept) || a.forward == [2]int{} {
			continue
		}
		if a.running() || a.pending() {
			return "", false
		}
		died = a.name
	}
	return died, died != ""
}

// UsedPorts returns the ports the pod's containers declare or pass to an
// agent (--tunnel, --forward's listening port): a new agent must not
// listen on any of them.
func UsedPorts(p *corev1.Pod) map[int]bool {
	used := map[int]bool{}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				used[int(cp.ContainerPort)] = true
			}
			if n, ok := tunnelPort(c.Args); ok {
				used[n] = true
			}
			if v, ok := argValue(c.Args, "--forward"); ok {
				if f, ok := parseForward(v); ok {
					used[f[0]] = true
				}
			}
		}
	}
	for _, c := range p.Spec.EphemeralContainers {
		if n, ok := tunnelPort(c.Args); ok {
			used[n] = true
		}
		if v, ok := argValue(c.Args, "--forward"); ok {
			if f, ok := parseForward(v); ok {
				used[f[0]] = true
			}
		}
	}
	return used
}

// ForwardUsable reports whether an intercept agent can accept the
// Service's traffic on port of the pod and pass it to the app's port app:
// an intercept agent with that --forward runs or starts there, or nothing
// in the pod's spec uses port.
func ForwardUsable(p *corev1.Pod, port, app int) bool {
	for _, a := range podAgents(p) {
		if a.forward == [2]int{port, app} && (a.running() || a.pending()) {
			return true
		}
	}
	return !UsedPorts(p)[port]
}

// InterceptAgent returns the pod's intercept agent (agent.JobIntercept)
// that runs or is still starting, with the rotated token tether stored for
// it; false when it has none whose token tether may read (progress says
// why). One the kubelet still reports starting counts: its status lags,
// by seconds under load, behind an agent that already answered.
func InterceptAgent(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, progress func(string)) (Agent, bool, error) {
	for _, a := range podAgents(p) {
		if !slices.Contains(a.jobs, agent.JobIntercept) || a.forward == [2]int{} || !(a.running() || a.pending()) {
			continue
		}
		stored, err := storedTokens(ctx, cs, p, []agentState{a}, progress)
		if err != nil {
			return Agent{}, false, err
		}
		if len(stored[a.name]) > 0 {
			return agentOf(p, a, stored), true, nil
		}
	}
	return Agent{}, false, nil
}
