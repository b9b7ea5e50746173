package intercept

import (
	"context"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	agentserver "github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/tunnel"
)

// agentLink runs a real agent on loopback and opens a tunnel to it.
func agentLink(t *testing.T) *agent.Link {
	t.Helper()
	token := []byte("0123456789abcdef-follow-test")
	cfg := agentserver.DefaultConfig()
	cfg.Token = token
	cfg.Record.Off = true
	a, err := agentserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.ServeListeners(ctx, tl, nil) }()
	c, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l, err := agent.Connect(ctx, c, tunnel.DefaultConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); cancel(); <-done })
	return l
}

// TestFollowWatchesPods: the follower learns from a watch, not a poll,
// that a pod is gone, and closes its tunnel; a pod that stays keeps its.
func TestFollowWatchesPods(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil), readyPod("orders-2", nil))
	f := startedFollower(t, cs)
	one, two := agentLink(t), agentLink(t)
	f.t.links["orders-1"], f.t.links["orders-2"] = one, two
	f.follow(context.Background())
	defer f.stop()

	if err := cs.CoreV1().Pods(ns).Delete(context.Background(), "orders-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-one.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel of a deleted pod is still open 10s later")
	}
	if f.t.link("orders-2") != two {
		t.Errorf("the tunnel of the pod that stays was replaced or closed")
	}
	if f.t.link("orders-1") != nil {
		t.Errorf("the deleted pod still has a tunnel")
	}
	watched := false
	for _, a := range cs.Actions() {
		watched = watched || (a.GetVerb() == "watch" && a.GetResource().Resource == "pods")
	}
	if !watched {
		t.Errorf("the follower did not watch the pods")
	}
}
