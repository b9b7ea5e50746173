package inspect

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Polling of a starting agent.
const (
	startTimeout = 2 * time.Minute
	pollInterval = 300 * time.Millisecond
	// eventsAfter: from then on, the kubelet's warning events about a
	// starting agent count as its failure; they come out seconds before
	// the container's status says the same.
	eventsAfter = 2 * time.Second
	// explainWithin bounds how long Explain waits for an unreachable
	// agent's container to be reported stopped.
	explainWithin = 5 * time.Second
	// logLines is how many of a failed agent's last log lines are shown.
	logLines = 10
)

// waitRunning waits for the agent named name to run, failing as soon as
// the kubelet reports that it cannot start or that it exited.
func waitRunning(ctx context.Context, cs kubernetes.Interface, ns, pod, name string, progress func(string)) (agentState, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	start, last, warned := time.Now(), time.Time{}, time.Time{}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return agentState{}, fmt.Errorf("wait for the inspection agent in pod %s: %w", pod, err)
		}
		var a *agentState
		for _, s := range podAgents(p) {
			if s.name == name {
				a = &s
			}
		}
		switch {
		case a == nil:
			return agentState{}, fmt.Errorf("ephemeral container %s vanished from pod %s", name, pod)
		case a.running():
			return *a, nil
		case !a.pending():
			return agentState{}, failure(ctx, cs, ns, pod, *a)
		}
		if time.Since(start) >= eventsAfter {
			// The kubelet's detailed warning ("Failed to pull image X:
			// why") can come after its summary ("Error: ErrImagePull").
			if w, detailed := warnings(ctx, cs, ns, pod, name); w != nil {
				if warned.IsZero() {
					warned = time.Now()
				}
				if detailed || time.Since(warned) >= eventsAfter {
					a.status = &corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: w}}
					return agentState{}, failure(ctx, cs, ns, pod, *a)
				}
			}
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for the agent to run in pod %s, %s", pod, time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return agentState{}, errdefs.Mark(errdefs.ErrUnavailable, fmt.Errorf(
				"the inspection agent %s did not start in pod %s within %s (`kubectl describe pod %s` shows why): %w",
				name, pod, startTimeout, pod, ctx.Err()))
		case <-time.After(pollInterval):
		}
	}
}

// Failed returns why agent a of its pod cannot start or stopped, with
// the kubelet's reason, once the kubelet has reported it; nil while it
// starts or runs.
func Failed(ctx context.Context, cs kubernetes.Interface, namespace string, a Agent) error {
	p, err := cs.CoreV1().Pods(namespace).Get(ctx, a.Pod, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read pod %s: %w", a.Pod, err)
	}
	for _, s := range podAgents(p) {
		if s.name == a.Container && !s.running() && !s.pending() {
			return failure(ctx, cs, namespace, a.Pod, s)
		}
	}
	return nil
}

// Explain returns why the agent cannot be reached when its container has
// stopped, or stops within a few seconds (the kubelet can report an agent
// that exits at once as running first); else cause. A later Ensure does
// not reuse or add that agent again.
func Explain(ctx context.Context, cs kubernetes.Interface, a Agent, namespace string, cause error) error {
	ctx, cancel := context.WithTimeout(ctx, explainWithin)
	defer cancel()
	for {
		p, err := cs.CoreV1().Pods(namespace).Get(ctx, a.Pod, metav1.GetOptions{})
		if err != nil {
			return cause
		}
		for _, s := range podAgents(p) {
			if s.name == a.Container && !s.running() && !s.pending() {
				return failure(ctx, cs, namespace, a.Pod, s)
			}
		}
		select {
		case <-ctx.Done():
			return cause
		case <-time.After(pollInterval):
		}
	}
}

// failure explains why agent a cannot run: the kubelet's reason, message
// and exit code, and when the kubelet kept no message, the last lines of
// its log (when the caller may read pods/log). A later Ensure refuses to
// add the same agent again, so the error says what to change.
func failure(ctx context.Context, cs kubernetes.Interface, ns, pod string, a agentState) error {
	var what, message string
	switch s := a.status.State; {
	case s.Waiting != nil:
		what, message = "cannot start: "+s.Waiting.Reason, s.Waiting.Message
	case s.Terminated != nil:
		what = fmt.Sprintf("exited: %s (exit code %d)", s.Terminated.Reason, s.Terminated.ExitCode)
		message = s.Terminated.Message
		if strings.TrimSpace(message) == "" {
			message = lastLogLines(ctx, cs, ns, pod, a.name)
		}
	default:
		what = "is not running"
	}
	msg := fmt.Sprintf("the inspection agent %s (image %s) in pod %s %s", a.name, a.image, pod, what)
	if m := strings.TrimSpace(message); m != "" {
		msg += ":\n" + indent(m)
	}
	if a.imageFailure() {
		msg += fmt.Sprintf("\ncheck that the image exists and that the node can pull it, or give another with --agent-image; "+
			"the kubelet keeps trying, and tether uses this agent once it runs (`kubectl describe pod %s -n %s`)\n%s", pod, ns, agent.ImageLoadHint(a.image))
	} else {
		msg += fmt.Sprintf("\nan ephemeral container cannot be restarted or removed, and tether does not add the same agent again to this pod: "+
			"give a working agent image with --agent-image, or inspect a new pod (delete this one if a workload replaces it); "+
			"`kubectl logs %s -n %s -c %s` shows its whole log", pod, ns, a.name)
	}
	return errdefs.User("%s", msg)
}

// warnings returns the kubelet's warnings about the container (a failed
// image pull, a container that cannot be created) as a waiting state, or
// nil when there is none or events cannot be read; detailed: one says more
// than "Error: REASON".
func warnings(ctx context.Context, cs kubernetes.Interface, ns, pod, container string) (w *corev1.ContainerStateWaiting, detailed bool) {
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": pod}.AsSelector().String()})
	if err != nil {
		return nil, false
	}
	path := fmt.Sprintf("spec.ephemeralContainers{%s}", container)
	seen := map[string]bool{}
	for _, e := range evs.Items {
		if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Name != pod || e.InvolvedObject.FieldPath != path || (e.Reason != "Failed" && e.Reason != "BackOff") {
			continue
		}
		if w == nil {
			w = &corev1.ContainerStateWaiting{Reason: e.Reason}
		}
		if strings.Contains(e.Message, "pull") || strings.Contains(e.Message, "ErrImagePull") {
			w.Reason = "ErrImagePull"
		}
		detailed = detailed || !strings.HasPrefix(e.Message, "Error: ")
		if !seen[e.Message] {
			seen[e.Message] = true
			w.Message = strings.TrimPrefix(w.Message+"\n"+e.Message, "\n")
		}
	}
	return w, detailed
}

// lastLogLines returns the container's last log lines, or a note saying
// why they could not be read.
func lastLogLines(ctx context.Context, cs kubernetes.Interface, ns, pod, container string) string {
	tail := int64(logLines)
	limit := int64(4096)
	rc, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &tail, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return fmt.Sprintf("(its log could not be read: %v)", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Sprintf("(its log could not be read: %v)", err)
	}
	return string(b)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
