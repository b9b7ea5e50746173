package server

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/agent"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/tunnel"
)

// serveTunnels accepts daemons' tunnels on l. Each tunnel gets its own gRPC
// server, so an Intercept binds the port to the tunnel that asked.
func (a *Agent) serveTunnels(ctx context.Context, l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go a.serveTunnel(ctx, c)
	}
}

func (a *Agent) serveTunnel(ctx context.Context, c net.Conn) {
	token, why := a.keys.handshakeToken()
	cfg := tunnel.DefaultConfig(token)
	cfg.Logger = a.log
	// The bootstrap token is spent before the client hears it is accepted:
	// a second tunnel cannot slip in while the first is being accepted.
	cfg.Admit = func() bool {
		if a.keys.opened(token) {
			return true
		}
		why = "the bootstrap token was used or rotated during the handshake"
		return false
	}
	sess, err := tunnel.Server(ctx, c, cfg)
	if err != nil {
		a.log.Warn("tunnel refused", "from", c.RemoteAddr().String(), "err", err, "why", why)
		return
	}
	a.log.Info("tunnel open")
	srv := grpc.NewServer()
	agentv1.RegisterAgentServer(srv, NewGRPCServer(&sessionService{agent: a, sess: sess}))
	go srv.Serve(sess.ControlListener())
	go a.serveDials(ctx, sess)
	select {
	case <-sess.Done():
	case <-ctx.Done():
		sess.Close()
	}
	srv.Stop()
	a.releaseSession(sess)
	a.prof.drop(sess)
	a.log.Info("tunnel closed; its intercepted ports go to the app again")
}

// serveDials connects, from the pod, the dial streams a daemon opens (for
// replays into the cluster, and tether run's connections: they leave
// from inside the pod).
func (a *Agent) serveDials(ctx context.Context, sess *tunnel.Session) {
	for {
		st, err := sess.Accept(ctx)
		if err != nil {
			return
		}
		if st.Role != tunnel.RoleDial {
			st.Close()
			continue
		}
		go func() {
			d := net.Dialer{Timeout: a.cfg.DialTimeout}
			if err := tunnel.ServeDial(ctx, st, func(ctx context.Context, addr string) (net.Conn, error) {
				// A sidecar dials for replays (intercept), an inspection
				// agent for tether run's process (run).
				if err := a.serving("a dial stream", agent.JobRun, agent.JobIntercept); err != nil {
					return nil, err
				}
				return d.DialContext(ctx, "tcp", addr)
			}); err != nil {
				a.log.Info("dial for the daemon", "to", string(st.Meta), "err", err)
			}
		}()
	}
}
