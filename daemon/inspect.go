package daemon

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/tunnel"
)

// inspectAgent makes sure an inspection agent runs in the pod and returns a
// client for it over a new tunnel; done closes the tunnel.
func (d *Daemon) inspectAgent(ctx context.Context, req inspect.Request, progress func(string)) (client *agent.Client, done func(), err error) {
	a, err := inspect.Ensure(ctx, d.cs, req, progress)
	if err != nil {
		return nil, nil, err // user errors come marked
	}
	client, done, err = d.agentClient(ctx, req.Namespace, req.Pod, a.Port, a.Token)
	if err != nil {
		return nil, nil, inspect.Explain(ctx, d.cs, a, req.Namespace, err)
	}
	return client, done, nil
}

// agentClient opens a tunnel to the agent listening on port in the pod and
// returns a client of its control API; done closes the tunnel.
func (d *Daemon) agentClient(ctx context.Context, namespace, pod string, port int, token []byte) (client *agent.Client, done func(), err error) {
	sess, err := d.agentSession(ctx, namespace, pod, port, token)
	if err != nil {
		return nil, nil, err
	}
	gc, err := grpc.NewClient("passthrough:///"+pod, grpc.WithContextDialer(sess.DialControl),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	return agent.NewClient(gc), func() { gc.Close(); sess.Close() }, nil
}

// agentSession opens a tunnel to the agent listening on port in the pod.
func (d *Daemon) agentSession(ctx context.Context, namespace, pod string, port int, token []byte) (*tunnel.Session, error) {
	conn, err := d.dialer.DialPod(ctx, namespace, pod, port)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of pod %s: %w", pod, err)
	}
	cfg := tunnel.DefaultConfig(token)
	cfg.Logger = d.log
	sess, err := tunnel.Client(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel to pod %s: %w", pod, err)
	}
	return sess, nil
}
