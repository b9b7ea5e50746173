package server

import (
	"context"
	"fmt"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/tunnel"
)

// inspectAgent makes sure an inspection agent runs in the pod and returns a
// link to it over a new tunnel; the caller closes the link.
func (d *Daemon) inspectAgent(ctx context.Context, req inspect.Request, progress func(string)) (*agent.Link, error) {
	a, err := inspect.Ensure(ctx, d.cs, req, progress)
	if err != nil {
		return nil, err // user errors come marked
	}
	link, err := d.agentLink(ctx, req.Namespace, req.Pod, a.Port, a.Token)
	if err != nil {
		return nil, inspect.Explain(ctx, d.cs, a, req.Namespace, err)
	}
	return link, nil
}

// agentLink opens a tunnel to the agent listening on port in the pod.
func (d *Daemon) agentLink(ctx context.Context, namespace, pod string, port int, token []byte) (*agent.Link, error) {
	conn, err := d.dialer.DialPod(ctx, namespace, pod, port)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of pod %s: %w", pod, err)
	}
	cfg := tunnel.DefaultConfig(token)
	cfg.Logger = d.log
	link, err := agent.Connect(ctx, conn, cfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel to pod %s: %w", pod, err)
	}
	return link, nil
}
