package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/tunnel"
)

// podDeadline ends a test pod that a killed doctor could not delete.
const podDeadline = int64(300)

// testPod is the short-lived pod that runs the agent image
// (agentspec.ProbePodSpec) with a token of this run's.
func testPod(name, image string, token []byte) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{agentspec.LabelDoctor: "true", "app.kubernetes.io/managed-by": "tether"},
			Annotations: map[string]string{"tether.dev/purpose": "tether doctor's check of the agent image and port-forward; deleted when it ends " +
				"(`kubectl delete pod -l " + agentspec.LabelDoctor + "` removes one an interrupted doctor left)"},
		},
		Spec: agentspec.ProbePodSpec(image, token, podDeadline),
	}
}

// pullFailures are the waiting reasons that mean the image cannot be had.
var pullFailures = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true, "RegistryUnavailable": true}

// loadFix says how to get the agent image into a cluster.
func loadFix(image string) string {
	return fmt.Sprintf("push %s to a registry the cluster's nodes can pull from and pass it with --agent-image, "+
		"or load it into a local cluster: `make agent-image` in a tether checkout, `k3s ctr images import tether-agent.tar` on k3s, `kind load docker-image %s` on kind", image, image)
}

// checkTestPod runs the agent image in a test pod (the image check) and
// opens the tunnel to it through a port-forward (the port-forward check).
// The pod is deleted before it returns, whatever happened.
func (o *DoctorOptions) checkTestPod(ctx context.Context) []Result {
	img := Result{Check: "agent image"}
	pf := Result{Check: "port-forward"}
	if o.SkipImage {
		img.Status, img.Detail = StatusSkipped, "--skip-image"
		pf.Status, pf.Detail = StatusSkipped, "it goes through the test pod (--skip-image)"
		return []Result{img, pf}
	}
	ns := o.Kube.Namespace
	actx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
	missing, err := access.Missing(actx, o.client, ns, []access.Rule{
		{Verb: "create", Resource: "pods"}, {Verb: "get", Resource: "pods"}, {Verb: "delete", Resource: "pods"},
	})
	cancel()
	if err != nil || len(missing) > 0 {
		why := fmt.Sprint(err)
		if err == nil {
			why = "you may not " + ruleList(missing) + " in namespace " + ns
		}
		img.Status, img.Detail = StatusWarn, "not checked: "+why+"; the cluster pulls "+o.AgentImage+" when you first add an agent"
		img.Fix = "grant the tether-doctor Role in docs/intercept.md, or pass --skip-image"
		pf.Status, pf.Detail = StatusSkipped, "it goes through the test pod, which was not started"
		return []Result{img, pf}
	}
	token := make([]byte, 32)
	rand.Read(token)
	token = []byte(hex.EncodeToString(token))
	suffix := make([]byte, 3)
	rand.Read(suffix)
	name := "tether-doctor-" + hex.EncodeToString(suffix)

	if _, err := o.client.CoreV1().Pods(ns).Create(ctx, testPod(name, o.AgentImage, token), metav1.CreateOptions{}); err != nil {
		img.Status, img.Detail = StatusFail, fmt.Sprintf("could not create the test pod in namespace %s: %v", ns, err)
		img.Fix = "the message says what refused it (a quota, a policy or admission webhook); tether's agents are added to pods the same way"
		pf.Status, pf.Detail = StatusSkipped, "it goes through the test pod, which could not be created"
		return []Result{img, pf}
	}
	defer o.deletePod(name)

	start := o.Now()
	started, detail := o.waitStarted(ctx, name)
	if !started {
		img.Status, img.Detail = StatusFail, detail
		if strings.Contains(detail, "cannot pull") {
			img.Fix = loadFix(o.AgentImage)
		} else {
			img.Fix = "`kubectl describe pod` on a tether agent's pod shows the same events; pass another image with --agent-image"
		}
		pf.Status, pf.Detail = StatusSkipped, "it goes through the test pod, which did not start"
		return []Result{img, pf}
	}
	img.Status = StatusOK
	img.Detail = fmt.Sprintf("%s started in a test pod (%s, deleted) in %s", o.AgentImage, detail, o.Now().Sub(start).Round(100*time.Millisecond))
	pf = o.checkPortForward(ctx, name, token)
	return []Result{img, pf}
}

// deletePod deletes the test pod, also when ctx was canceled (Ctrl-C).
func (o *DoctorOptions) deletePod(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zero := int64(0)
	if err := o.client.CoreV1().Pods(o.Kube.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		fmt.Fprintf(o.ErrOut, "could not delete the test pod %s: %v; `kubectl -n %s delete pod %s` removes it\n", name, err, o.Kube.Namespace, name)
	}
}

// waitStarted waits until the test pod's agent runs, its image refused,
// the agent ended or ImageTimeout passed, saying on stderr what it waits
// for every few seconds. It returns whether it started and the detail.
func (o *DoctorOptions) waitStarted(ctx context.Context, name string) (bool, string) {
	ns := o.Kube.Namespace
	deadline := o.Now().Add(o.ImageTimeout)
	lastSaid := o.Now()
	state := "Pending"
	for {
		p, err := o.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if ok, detail, done := podStarted(p, o.AgentImage); done {
				return ok, detail
			}
			state = podState(p)
		} else if ctx.Err() != nil {
			return false, "interrupted"
		}
		if o.Now().After(deadline) {
			return false, fmt.Sprintf("the test pod %s did not start within %s (%s)", name, o.ImageTimeout, state)
		}
		if o.Now().Sub(lastSaid) >= o.progressInterval() {
			fmt.Fprintf(o.ErrOut, "doctor: waiting for test pod %s to start %s: %s (%s of at most %s)\n", name, o.AgentImage, state, o.Now().Sub(deadline.Add(-o.ImageTimeout)).Round(time.Second), o.ImageTimeout)
			lastSaid = o.Now()
		}
		select {
		case <-ctx.Done():
			return false, "interrupted"
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// progressInterval is how often waitStarted says what it waits for.
func (o *DoctorOptions) progressInterval() time.Duration {
	if o.progressEvery > 0 {
		return o.progressEvery
	}
	return 5 * time.Second
}

// podStarted decides from p's status: done says the wait is over, ok that
// the agent runs.
func podStarted(p *corev1.Pod, image string) (ok bool, detail string, done bool) {
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Running != nil:
			return true, "node " + p.Spec.NodeName, true
		case c.State.Waiting != nil && pullFailures[c.State.Waiting.Reason]:
			return false, fmt.Sprintf("the cluster cannot pull %s (%s: %s)", image, c.State.Waiting.Reason, c.State.Waiting.Message), true
		case c.State.Waiting != nil && strings.HasPrefix(c.State.Waiting.Reason, "CreateContainer"):
			return false, fmt.Sprintf("the agent's container cannot be created (%s: %s)", c.State.Waiting.Reason, c.State.Waiting.Message), true
		case c.State.Terminated != nil:
			t := c.State.Terminated
			return false, fmt.Sprintf("the agent in %s exited at once (%s, exit code %d): %s", image, t.Reason, t.ExitCode, strings.TrimSpace(t.Message)), true
		}
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return false, fmt.Sprintf("the test pod ended (%s: %s)", p.Status.Reason, p.Status.Message), true
	}
	return false, "", false
}

// podState says what a pending pod waits for.
func podState(p *corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" {
			return strings.TrimSpace(w.Reason + " " + w.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			return fmt.Sprintf("not scheduled: %s %s", c.Reason, c.Message)
		}
	}
	return string(p.Status.Phase)
}

// checkPortForward opens a port-forward to the test pod's tunnel port and
// completes the tunnel handshake with its agent, retrying while the agent
// may not listen yet.
func (o *DoctorOptions) checkPortForward(ctx context.Context, pod string, token []byte) Result {
	r := Result{Check: "port-forward"}
	ctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
	defer cancel()
	start := o.Now()
	var lastErr error
	stage := "port-forward"
	for {
		info, st, err := o.handshake(ctx, pod, token)
		if err == nil {
			r.Status = StatusOK
			r.Detail = fmt.Sprintf("tunnel handshake with agent %s in pod %s through the API server's port-forward in %s", info.Version, pod, o.Now().Sub(start).Round(time.Millisecond))
			return r
		}
		lastErr, stage = err, st
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
			continue
		}
		break
	}
	r.Status = StatusFail
	if stage == "port-forward" {
		r.Detail = fmt.Sprintf("port-forward to pod %s port %d failed: %v", pod, agent.DefaultTunnelPort, lastErr)
		r.Fix = "tether reaches its agents through the API server's port-forward (pods/portforward): check that `kubectl port-forward` works from here, and that no proxy between you and the API server refuses WebSocket or SPDY upgrades"
	} else {
		r.Detail = fmt.Sprintf("port-forward to pod %s works, the tunnel handshake with its agent failed: %v", pod, lastErr)
		r.Fix = "use the agent image of this tether's version (--agent-image; `tether version` shows it)"
	}
	return r
}

// handshake is one attempt: the port-forward, then agent.Connect and one
// call. stage says which part failed.
func (o *DoctorOptions) handshake(ctx context.Context, pod string, token []byte) (agent.Info, string, error) {
	conn, err := o.DialPod(ctx, o.Kube.Namespace, pod, agent.DefaultTunnelPort)
	if err != nil {
		return agent.Info{}, "port-forward", err
	}
	link, err := agent.Connect(ctx, conn, tunnel.DaemonConfig(token))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return agent.Info{}, "port-forward", err
		}
		return agent.Info{}, "handshake", err
	}
	defer link.Close()
	info, err := link.Agent().Info(ctx)
	if err != nil {
		return agent.Info{}, "handshake", err
	}
	return info, "", nil
}

func ruleList(rules []access.Rule) string {
	var s []string
	for _, r := range rules {
		s = append(s, r.String())
	}
	return strings.Join(s, ", ")
}
