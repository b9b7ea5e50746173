package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tetherkube/tether/tunnel"
)

// Link is a daemon's connection to one agent: a tunnel (tunnel/spec.md)
// whose control streams carry the agent's API, the conn streams the agent
// opens for intercepted connections, and the dial streams the daemon opens
// to connect from inside the pod. When the direct path is open
// (OfferDirect), the data streams use it while it lives; the control API
// stays on the first tunnel, which is the Link's life.
type Link struct {
	sess   *tunnel.Session
	mu     sync.Mutex
	cfg    tunnel.Config // its Token: the one the agent accepts now
	conn   *grpc.ClientConn
	client *Client

	direct  atomic.Pointer[tunnel.Session]
	conns   chan *tunnel.Stream
	closing atomic.Bool

	before []func() // BeforeClose's, under mu
}

// MaxMessageSize bounds one message from the agent: a recorded exchange
// (two bodies of at most the body cap, which is at most half the budget).
const MaxMessageSize = 1 << 30

// Connect opens a tunnel to an agent over conn, any byte stream that
// reaches the agent's tunnel port (in production, a port-forward), and
// returns the Link. It owns conn from then on: conn is closed when Connect
// fails or the Link is closed. cfg is the tunnel's configuration, holding
// the agent's token (tunnel.DaemonConfig(token)).
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
	l := &Link{sess: sess, cfg: cfg, conn: gc, client: NewClient(gc), conns: make(chan *tunnel.Stream)}
	go l.pump(sess)
	return l, nil
}

// pump hands the conn streams of s to AcceptConn until s or the Link ends;
// a stream of another role is refused (closed).
func (l *Link) pump(s *tunnel.Session) {
	for {
		st, err := s.Accept(context.Background())
		if err != nil {
			return
		}
		if st.Role != tunnel.RoleConn {
			st.Close()
			continue
		}
		select {
		case l.conns <- st:
		case <-l.sess.Done():
			st.Close()
			return
		}
	}
}

// Rotate gives the agent the token it accepts from now on (an inspection
// agent's bootstrap token is replaced), and keeps it for the direct path.
func (l *Link) Rotate(ctx context.Context, token []byte) error {
	if err := l.client.Rotate(ctx, token); err != nil {
		return err
	}
	l.mu.Lock()
	l.cfg.Token = bytes.Clone(token)
	l.mu.Unlock()
	return nil
}

// Agent returns the client of the agent's control API.
func (l *Link) Agent() *Client { return l.client }

// AcceptConn returns the next connection the agent sends through the
// tunnel, over either path: an intercepted connection of the cluster, as a
// conn stream.
func (l *Link) AcceptConn(ctx context.Context) (net.Conn, error) {
	select {
	case st := <-l.conns:
		return st, nil
	case <-l.sess.Done():
		return nil, tunnel.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Dial connects to addr from inside the agent's pod, through a dial
// stream: on the direct path while it lives, else on the port-forward.
func (l *Link) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if d := l.liveDirect(); d != nil {
		c, err := d.Dial(ctx, addr)
		if err == nil {
			return c, nil
		}
		select {
		case <-d.Done(): // the direct path died under us: the port-forward carries it
		default:
			return nil, err
		}
	}
	return l.sess.Dial(ctx, addr)
}

// Done is closed when the tunnel ends: closed by either side, or the agent
// found dead by the tunnel's dead-peer check (tunnel.ErrPeerDead). The
// direct path ending alone does not end the Link.
func (l *Link) Done() <-chan struct{} { return l.sess.Done() }

// Ended reports whether Done is closed.
func (l *Link) Ended() bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// BeforeClose makes Close call f first, while the tunnel is still up
// (the daemon collects the agent's profile there).
func (l *Link) BeforeClose(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.before = append(l.before, f)
}

// Close calls the BeforeClose functions once, then ends the client and
// both tunnels.
func (l *Link) Close() error {
	l.mu.Lock()
	before := l.before
	l.before = nil
	l.mu.Unlock()
	for _, f := range before {
		f()
	}
	l.closing.Store(true)
	l.conn.Close()
	// The port-forward first: the agent then ends the direct tunnel as
	// the end of the link, not as a direct path that died.
	err := l.sess.Close()
	if d := l.direct.Load(); d != nil {
		d.Close()
	}
	return err
}
