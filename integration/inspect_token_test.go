//go:build integration

package integration

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/tunnel"
)

// TestInspectTokenRotated: after a trace and a capture on a pod, each
// inspection agent's token in the pod's spec (readable by anyone who may
// get the pod) no longer opens a tunnel, even through a port-forward to
// the agent's port; the rotated token, in a Secret of each agent's own that
// the pod owns, does; the root capture agent refuses probes; a second trace and capture reuse both agents through
// it; no namespace-wide token Secret exists. Before, the spec's token was
// the namespace's and opened every agent for as long as it ran.
func TestInspectTokenRotated(t *testing.T) {
	e := newEnvLevel(t, "baseline") // capture needs CAP_NET_RAW
	e.deployOrders(1)
	pod := e.clientPod("client")
	dir := t.TempDir()
	run := func(round int) {
		t.Helper()
		if rep, code := e.trace(pod, "svc/orders"); code != 0 {
			t.Fatalf("round %d, trace: exit %d, want 0:\n%s", round, code, reportText(rep))
		}
		file := filepath.Join(dir, "capture.pcap")
		_, stderr, code := e.tether(agentImage("capture", pod, "--duration", "2s", "-w", file, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
		if code != 0 {
			t.Fatalf("round %d, capture: exit %d, want 0; stderr:\n%s", round, code, stderr)
		}
	}
	run(1)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agents := 0
	for _, c := range p.Spec.EphemeralContainers {
		if !strings.HasPrefix(c.Name, "tether-inspect") {
			continue
		}
		agents++
		specToken, port := specOf(t, c)
		s, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, c.Name+"."+pod, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("agent %s: its token Secret: %v", c.Name, err)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != p.UID {
			t.Errorf("agent %s: token Secret owned by %v, want the pod %s", c.Name, s.OwnerReferences, p.UID)
		}
		if err := openTunnel(ctx, e, pod, port, specToken); !errors.Is(err, tunnel.ErrBadToken) {
			t.Errorf("agent %s: tunnel with the token of the pod's spec: err = %v, want %v", c.Name, err, tunnel.ErrBadToken)
		}
		if err := openTunnel(ctx, e, pod, port, s.Data["token"]); err != nil {
			t.Errorf("agent %s: tunnel with the rotated token: %v", c.Name, err)
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0 {
			// The root capture agent serves Capture only.
			if err := probeThrough(ctx, e, pod, port, s.Data["token"]); !errors.Is(err, agent.ErrNotServed) {
				t.Errorf("capture agent %s: Probe: err = %v, want %v", c.Name, err, agent.ErrNotServed)
			}
		}
	}
	if agents != 2 {
		t.Fatalf("pod has %d inspection agents after a trace and a capture, want 2: %v", agents, e.inspectContainers(pod))
	}
	if _, err := e.cs.CoreV1().Secrets(e.ns).Get(ctx, "tether-inspect", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace-wide Secret tether-inspect: err = %v, want not found", err)
	}

	run(2)
	if got := e.inspectContainers(pod); len(got) != 2 {
		t.Errorf("after a second trace and capture the pod has %d inspection agents, want the 2 reused: %v", len(got), got)
	}
}

// specOf returns the token and tunnel port in an inspection container's
// spec.
func specOf(t *testing.T, c corev1.EphemeralContainer) (token []byte, port int) {
	t.Helper()
	for _, v := range c.Env {
		if v.Name == "TETHER_TOKEN" {
			token = []byte(v.Value)
		}
	}
	for i, a := range c.Args {
		if a == "--tunnel" && i+1 < len(c.Args) {
			_, p, _ := net.SplitHostPort(c.Args[i+1])
			port, _ = strconv.Atoi(p)
		}
	}
	if len(token) == 0 || port == 0 {
		t.Fatalf("container %s: no token or port in %v", c.Name, c.Args)
	}
	return token, port
}

// probeThrough asks the agent on port for a probe from the pod.
func probeThrough(ctx context.Context, e *env, pod string, port int, token []byte) error {
	addr, stop, err := cluster.ForwardPort(ctx, e.rc, e.ns, pod, port)
	if err != nil {
		e.t.Fatal(err)
	}
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	link, err := agent.Connect(ctx, conn, tunnel.DefaultConfig(token))
	if err != nil {
		return err
	}
	defer link.Close()
	_, err = link.Agent().Probe(ctx, agent.ProbeRequest{Address: "127.0.0.1:" + strconv.Itoa(port)})
	return err
}

// openTunnel port-forwards to the agent's port, as anyone with
// pods/portforward can, and runs the tunnel's handshake with token.
func openTunnel(ctx context.Context, e *env, pod string, port int, token []byte) error {
	addr, stop, err := cluster.ForwardPort(ctx, e.rc, e.ns, pod, port)
	if err != nil {
		e.t.Fatal(err)
	}
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	sess, err := tunnel.Client(ctx, conn, tunnel.DefaultConfig(token))
	if err != nil {
		conn.Close()
		return err
	}
	return sess.Close()
}
