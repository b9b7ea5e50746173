package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/agentspec"
)

func node(name, os string, ready bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if os != "" {
		n.Labels[corev1.LabelOSStable] = os
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	return n
}

func TestOtherNodes(t *testing.T) {
	cs := fake.NewClientset(node("node-1", "linux", true), node("node-2", "linux", true), node("node-3", "linux", false),
		node("node-4", "", true), node("win-1", "windows", true))
	nodes, unchecked := otherNodes(context.Background(), cs, map[string]bool{"node-1": true})
	if diff := cmp.Diff([]string{"node-2", "node-4"}, nodes); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if !strings.Contains(unchecked, "non-Linux nodes win-1") {
		t.Errorf("unchecked = %q, want the Windows node named", unchecked)
	}

	// Every node covered: nothing to start, nothing unchecked.
	cs = fake.NewClientset(node("node-1", "linux", true))
	if nodes, unchecked := otherNodes(context.Background(), cs, map[string]bool{"node-1": true}); len(nodes) != 0 || unchecked != "" {
		t.Errorf("one covered node: nodes %q, unchecked %q, want none", nodes, unchecked)
	}

	// Past MaxNodeProbers: the rest are named as unchecked.
	var many []runtime.Object
	for i := range MaxNodeProbers + 3 {
		many = append(many, node(fmt.Sprintf("node-%02d", i), "linux", true))
	}
	nodes, unchecked = otherNodes(context.Background(), fake.NewClientset(many...), nil)
	if len(nodes) != MaxNodeProbers || !strings.Contains(unchecked, "3 nodes past the first 16") {
		t.Errorf("%d nodes, unchecked %q; want %d and 3 past", len(nodes), unchecked, MaxNodeProbers)
	}

	// Without the right to list nodes: none, and the reason.
	cs = fake.NewClientset()
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC"))
	})
	if nodes, unchecked := otherNodes(context.Background(), cs, nil); len(nodes) != 0 || !strings.Contains(unchecked, "you may not list nodes") {
		t.Errorf("forbidden: nodes %q, unchecked %q", nodes, unchecked)
	}
}

// TestReadyCheckFromOtherNodes: the nodes no intercepted pod runs on probe
// through their probe pods, with the same nonce and expectations; a node
// whose probe pod never came up is a warning naming it.
func TestReadyCheckFromOtherNodes(t *testing.T) {
	allPods := []string{"orders-a"}
	for _, tc := range []struct {
		name         string
		node3Err     error
		wantProgress string
	}{
		{name: "all ready", wantProgress: "reaches the agents of 1 pods from 3 nodes (9 connections, "},
		{name: "a probe pod failed", node3Err: errors.New("ErrImagePull: no such image"),
			wantProgress: "from node node-3: no probe pod (ErrImagePull: no such image); not checked: non-Linux nodes win-1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			own := &fakeAgent{result: ready(allPods...)}
			node2 := &fakeAgent{result: ready(allPods...)}
			others := &nodeProbers{byNode: map[string]*nodeProber{
				"node-2": {node: "node-2", pod: "tether-ready-x", done: closed(), agent: node2},
				"node-3": {node: "node-3", pod: "tether-ready-y", done: closed(), agent: &fakeAgent{result: ready(allPods...)}, err: tc.node3Err},
			}}
			var lines []string
			err := readyCheck{svc: "service/orders port 80", addr: "10.43.0.10:80", agents: map[string]agent.Service{"orders-a": own},
				nodes: map[string]string{"orders-a": "node-1"}, others: others, otherNodes: []string{"node-2", "node-3"}, unchecked: "non-Linux nodes win-1",
				log: slog.New(slog.DiscardHandler), progress: func(s string) { lines = append(lines, s) }}.run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(lines[0], "also from node-2, node-3 (probe pods") {
				t.Errorf("first progress line %q, want the probe pods' nodes", lines[0])
			}
			if last := lines[len(lines)-1]; !strings.Contains(last, tc.wantProgress) || !strings.HasSuffix(last, "not checked: non-Linux nodes win-1") &&
				!strings.Contains(last, "not checked: non-Linux nodes win-1); going on") {
				t.Errorf("last progress line %q, want %q and the unchecked nodes", last, tc.wantProgress)
			}
			// Only the pod's agent registers the nonce; the probe pod
			// probes with it, expecting the intercepted pod.
			if len(node2.nonces) != 0 || len(node2.probes) != 1 {
				t.Fatalf("probe pod: %d ExpectProbe, %d ProbeService calls; want 0 and 1", len(node2.nonces), len(node2.probes))
			}
			if got := node2.probes[0]; string(got.Nonce) != string(own.nonces[0]) || !cmp.Equal(got.Expect, allPods) {
				t.Errorf("probe pod's probe %+v, want the agent's nonce and pods %v", got, allPods)
			}
		})
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// TestProberPod: the probe pod runs on its node whatever its taints, the
// probe job only, restricted, and ends itself.
func TestProberPod(t *testing.T) {
	p := proberPod("node-2", "tether-agent:dev", []byte("tok"))
	s := p.Spec
	if s.NodeName != "node-2" || len(s.Tolerations) != 1 || s.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("placement: node %q, tolerations %+v", s.NodeName, s.Tolerations)
	}
	if s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds != proberDeadline || s.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("the pod does not end itself: deadline %v, restart %s", s.ActiveDeadlineSeconds, s.RestartPolicy)
	}
	if *s.AutomountServiceAccountToken {
		t.Error("the probe pod mounts a service account token")
	}
	c := s.Containers[0]
	if want := []string{"--serve", string(agent.JobProbe)}; !strings.Contains(strings.Join(c.Args, " "), strings.Join(want, " ")) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	if sc := c.SecurityContext; sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 {
		t.Errorf("security context %+v, want the sidecar's restricted one", sc)
	}
	if p.Labels[agentspec.LabelReadyProbe] != "true" || p.GenerateName == "" {
		t.Errorf("labels %v, generateName %q", p.Labels, p.GenerateName)
	}
}

func TestProberState(t *testing.T) {
	pod := func(s corev1.ContainerState) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: s}}}}
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		running bool
		why     string
	}{
		{"pending", &corev1.Pod{}, false, ""},
		{"creating", pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}), false, ""},
		{"running", pod(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}), true, ""},
		{"pull", pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}), false, "ErrImagePull: not found"},
		{"exited", pod(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "bad flag\n"}}),
			false, "its agent exited (Error, code 1): bad flag"},
	} {
		running, why := proberState(tc.pod)
		if running != tc.running || why != tc.why {
			t.Errorf("%s: (%v, %q), want (%v, %q)", tc.name, running, why, tc.running, tc.why)
		}
	}
}

type noDialer struct{}

func (noDialer) DialPod(context.Context, string, string, int) (net.Conn, error) {
	return nil, errors.New("no port-forward in this test")
}

// TestEarlyProbers: probe pods start early on the nodes the workload's
// pods do not run on now, and on none when they run on every node.
func TestEarlyProbers(t *testing.T) {
	cs := fake.NewClientset(node("node-1", "linux", true), node("node-2", "linux", true))
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Name == "" {
			p.Name = p.GenerateName + "abcde" // as the API server would
		}
		return false, nil, nil
	})
	m := &Manager{CS: cs, Dialer: noDialer{}}
	ctx := context.Background()
	if p := m.earlyProbers(ctx, "ns", "agent:dev", map[string]bool{"node-1": true, "node-2": true}); p != nil {
		t.Errorf("every node covered: probe pods started on %v", p.byNode)
	}
	if p := m.earlyProbers(ctx, "ns", "agent:dev", nil); p != nil {
		t.Errorf("no pods to go by: probe pods started on %v", p.byNode)
	}
	p := m.earlyProbers(ctx, "ns", "agent:dev", map[string]bool{"node-1": true})
	if p == nil || len(p.byNode) != 1 || p.byNode["node-2"] == nil {
		t.Fatalf("want a probe pod on node-2 only, got %v", p)
	}
	p.close()
	pods, err := cs.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("after close: %d pods left (%v)", len(pods.Items), err)
	}
}
