package portforward

import (
	"context"
	"errors"
	"net"
	"sync"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// PodConn is an API connection to a pod's port-forward, opened ahead of
// the connection to a port it carries: a caller that tries a port until
// something listens there (an agent that is starting) opens the next
// try's API connection (TLS, the upgrade, the API server's connection to
// the kubelet) while it waits, and the try itself is two streams. One
// connection per API connection, as DialPod: on k3s 1.32 (SPDY over
// WebSocket), once pairs of streams to a port where nothing listened had
// failed on a connection, the fourth pair on it got no answer (a 30 s
// timeout).
type PodConn struct {
	conn           httpstream.Connection
	namespace, pod string

	mu   sync.Mutex
	used bool
}

// Connect opens an API connection to the pod namespace/pod's
// port-forward; PodConn.Dial then opens a connection through it.
func (d *Dialer) Connect(ctx context.Context, namespace, pod string) (*PodConn, error) {
	conn, err := d.connect(ctx, namespace, pod)
	if err != nil {
		return nil, err
	}
	return &PodConn{conn: conn, namespace: namespace, pod: pod}, nil
}

var errUsed = errors.New("port-forward: the API connection carries a connection already")

// Dial opens the connection to port of the pod, which owns the API
// connection from then on (closing it closes both). It fails when called
// twice, and closes the API connection when it fails.
func (p *PodConn) Dial(port int) (net.Conn, error) {
	p.mu.Lock()
	used := p.used
	p.used = true
	p.mu.Unlock()
	if used {
		return nil, errUsed
	}
	c, err := openStreams(p.conn, p.namespace, p.pod, port)
	if err != nil {
		p.conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the API connection if Dial did not hand it on.
func (p *PodConn) Close() error {
	p.mu.Lock()
	used := p.used
	p.used = true
	p.mu.Unlock()
	if used {
		return nil
	}
	return p.conn.Close()
}
