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
	conn, err := d.dialer.DialPod(ctx, req.Namespace, req.Pod, inspect.TunnelPort)
	if err != nil {
		return nil, nil, fmt.Errorf("reach the inspection agent of pod %s: %w", req.Pod, err)
	}
	cfg := tunnel.DefaultConfig(a.Token)
	cfg.Logger = d.log
	sess, err := tunnel.Client(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("tunnel to pod %s: %w", req.Pod, err)
	}
	gc, err := grpc.NewClient("passthrough:///"+req.Pod, grpc.WithContextDialer(sess.DialControl),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	return agent.NewClient(gc), func() { gc.Close(); sess.Close() }, nil
}
