package agent

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tetherkube/tether/tunnel"
)

// Link is a daemon's connection to one agent: a tunnel (tunnel/spec.md)
// whose control streams carry the agent's API, the conn streams the agent
// opens for intercepted connections, and the dial streams the daemon opens
// to connect from inside the pod.
type Link struct {
	sess   *tunnel.Session
	conn   *grpc.ClientConn
	client *Client
}

// MaxMessageSize bounds one message from the agent: a recorded exchange
// (two bodies of at most the body cap, which is at most half the budget).
const MaxMessageSize = 1 << 30

// Connect opens a tunnel to an agent over conn, any byte stream that
// reaches the agent's tunnel port (in production, a port-forward), and
// returns the Link. It owns conn from then on: conn is closed when Connect
// fails or the Link is closed. cfg is the tunnel's configuration, holding
// the agent's token (tunnel.DefaultConfig(token)).
//
// The daemon serves nothing on the tunnel's control streams: the Link
// refuses those the agent opens at once, so none holds a goroutine.
func Connect(ctx context.Context, conn net.Conn, cfg tunnel.Config) (*Link, error) {
	sess, err := tunnel.Client(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sess.ControlListener().Close()
	// One recorded exchange travels in one message and may hold two bodies
	// as large as the body cap allows: gRPC's 4 MiB default would refuse
	// the whole listing for it.
	gc, err := grpc.NewClient("passthrough:///agent", grpc.WithContextDialer(sess.DialControl),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("agent client: %w", err)
	}
	return &Link{sess: sess, conn: gc, client: NewClient(gc)}, nil
}

// Agent returns the client of the agent's control API.
func (l *Link) Agent() *Client { return l.client }

// AcceptConn returns the next connection the agent sends through the
// tunnel: an intercepted connection of the cluster, as a conn stream. A
// stream of another role is refused (closed) and not returned.
func (l *Link) AcceptConn(ctx context.Context) (net.Conn, error) {
	for {
		st, err := l.sess.Accept(ctx)
		if err != nil {
			return nil, err
		}
		if st.Role == tunnel.RoleConn {
			return st, nil
		}
		st.Close()
	}
}

// Dial connects to addr from inside the agent's pod, through a dial stream.
func (l *Link) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return l.sess.Dial(ctx, addr)
}

// Done is closed when the tunnel ends: closed by either side, or the agent
// found dead by the tunnel's dead-peer check (tunnel.ErrPeerDead).
func (l *Link) Done() <-chan struct{} { return l.sess.Done() }

// Close ends the client and the tunnel.
func (l *Link) Close() error {
	l.conn.Close()
	return l.sess.Close()
}
