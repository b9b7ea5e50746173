// Package portforward opens connections to a pod's port through the
// Kubernetes API's port-forward subresource (WebSocket, falling back to
// SPDY), as net.Conns: no local listener, one API connection per Conn.
package portforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Dialer dials pods' ports through the API server.
type Dialer struct {
	rc *rest.Config
	cs kubernetes.Interface
}

// NewDialer returns a Dialer using rc.
func NewDialer(rc *rest.Config) (*Dialer, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Dialer{rc: rc, cs: cs}, nil
}

// StreamDialer returns client-go's stock dialer of the pod's port-forward
// subresource: WebSocket, falling back to SPDY where the server lacks it,
// as kubectl does. The benchmarks' raw port-forward baseline uses it;
// tether's own connections use framedDialer's WebSocket path instead.
func StreamDialer(rc *rest.Config, cs kubernetes.Interface, namespace, pod string) (httpstream.Dialer, error) {
	url := portForwardURL(cs, namespace, pod)
	wsDialer, err := portforward.NewSPDYOverWebsocketDialer(url, rc)
	if err != nil {
		return nil, err
	}
	return withSPDYFallback(rc, url, wsDialer)
}

// framedDialer is StreamDialer with tether's WebSocket path (wsDialer: one
// message per SPDY frame), falling back to SPDY as StreamDialer does.
func framedDialer(rc *rest.Config, cs kubernetes.Interface, namespace, pod string) (httpstream.Dialer, error) {
	url := portForwardURL(cs, namespace, pod)
	ws, err := newWSDialer(url, rc)
	if err != nil {
		return nil, err
	}
	return withSPDYFallback(rc, url, ws)
}

func portForwardURL(cs kubernetes.Interface, namespace, pod string) *url.URL {
	return cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
}

// withSPDYFallback tries primary, then plain SPDY when the server cannot
// upgrade to WebSocket (API servers before 1.30, some proxies).
func withSPDYFallback(rc *rest.Config, url *url.URL, primary httpstream.Dialer) (httpstream.Dialer, error) {
	transport, upgrader, err := spdy.RoundTripperFor(rc)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	return portforward.NewFallbackDialer(primary, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// DialPod connects to port of the pod namespace/pod. The pod's side of the
// connection is made by the kubelet to the pod's loopback address, so a
// port the pod serves only on 127.0.0.1 is reachable.
func (d *Dialer) DialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	conn, err := d.connect(ctx, namespace, pod)
	if err != nil {
		return nil, err
	}
	c, err := openStreams(conn, namespace, pod, port)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// connect opens an API connection to the pod's port-forward.
func (d *Dialer) connect(ctx context.Context, namespace, pod string) (httpstream.Connection, error) {
	dialer, err := framedDialer(d.rc, d.cs, namespace, pod)
	if err != nil {
		return nil, err
	}
	type result struct {
		conn httpstream.Connection
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", namespace, pod, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Early is a port-forward connection to a pod's port opened before the
// port is listened on: the API server's and the kubelet's part of a dial
// (a WebSocket upgrade through both, and the error stream's round trip)
// needs only the pod's sandbox; Dial then opens the data stream, which
// the kubelet connects to the port, once something listens there.
type Early struct {
	conn           httpstream.Connection
	namespace, pod string
	port           int
	errStream      httpstream.Stream
	opened         time.Time
}

// earlyPairFor is how long Early's error stream waits for its data stream:
// the kubelet drops a stream pair left incomplete for 30 s.
const earlyPairFor = 20 * time.Second

// ConnectPod opens a port-forward connection to the pod's port, to Dial
// later; the pod needs its sandbox, not a running container.
func (d *Dialer) ConnectPod(ctx context.Context, namespace, pod string, port int) (*Early, error) {
	conn, err := d.connect(ctx, namespace, pod)
	if err != nil {
		return nil, err
	}
	errStream, err := conn.CreateStream(streamHeaders(corev1.StreamTypeError, port, 0))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: error stream: %w", namespace, pod, port, err)
	}
	errStream.Close() // the client never writes to it
	return &Early{conn: conn, namespace: namespace, pod: pod, port: port, errStream: errStream, opened: time.Now()}, nil
}

// Dial connects to the port over e, once: the Conn owns e's connection,
// and e is spent whether or not Dial succeeds. An Early older than
// earlyPairFor is refused (the caller dials anew): a second stream pair on
// a connection whose first one the kubelet gave up was seen to hang for
// its 30 s.
func (e *Early) Dial() (net.Conn, error) {
	if age := time.Since(e.opened); age >= earlyPairFor {
		e.conn.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d opened %s ago: its stream pair has expired", e.namespace, e.pod, e.port, age.Round(time.Second))
	}
	c, err := openData(e.conn, e.errStream, e.namespace, e.pod, e.port, 0)
	if err != nil {
		e.conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes an Early that was not dialed.
func (e *Early) Close() error { return e.conn.Close() }

// openStreams opens a connection to port on conn: its error and data
// streams. The Conn owns conn (its Close closes it).
func openStreams(conn httpstream.Connection, namespace, pod string, port int) (*Conn, error) {
	return openPair(conn, namespace, pod, port, 0)
}

// openPair opens the error and data streams of request id on conn.
func openPair(conn httpstream.Connection, namespace, pod string, port, id int) (*Conn, error) {
	errStream, err := conn.CreateStream(streamHeaders(corev1.StreamTypeError, port, id))
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s:%d: error stream: %w", namespace, pod, port, err)
	}
	errStream.Close() // the client never writes to it
	return openData(conn, errStream, namespace, pod, port, id)
}

// openData opens the data stream of request id, whose error stream is
// errStream.
func openData(conn httpstream.Connection, errStream httpstream.Stream, namespace, pod string, port, id int) (*Conn, error) {
	data, err := conn.CreateStream(streamHeaders(corev1.StreamTypeData, port, id))
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s:%d: data stream: %w", namespace, pod, port, err)
	}
	c := newConn(conn, data, addr("port-forward"), addr(fmt.Sprintf("%s/%s:%d", namespace, pod, port)))
	go c.watchErrors(errStream)
	return c, nil
}

func streamHeaders(typ string, port, id int) http.Header {
	h := http.Header{}
	h.Set(corev1.StreamType, typ)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	return h
}

// Conn is one port-forwarded connection. Its deadlines work as net.Conn's
// do (see deadline.go).
type Conn struct {
	conn          httpstream.Connection
	data          httpstream.Stream
	local, remote net.Addr

	mu        sync.Mutex
	remoteErr error
	closeOnce sync.Once
	closed    chan struct{}

	reader                      *pump
	readDeadline, writeDeadline *deadline
}

func newConn(conn httpstream.Connection, data httpstream.Stream, local, remote net.Addr) *Conn {
	c := &Conn{conn: conn, data: data, local: local, remote: remote, closed: make(chan struct{}),
		readDeadline: newDeadline(), writeDeadline: newDeadline()}
	c.reader = newPump(data)
	return c
}

// watchErrors reads the error stream: the kubelet writes there when it
// cannot connect to the pod's port, and the data stream then just ends.
func (c *Conn) watchErrors(errStream httpstream.Stream) {
	msg, _ := io.ReadAll(errStream)
	if s := strings.TrimSpace(string(msg)); s != "" {
		c.mu.Lock()
		c.remoteErr = errors.New(s)
		c.mu.Unlock()
		c.Close()
	}
}

// RemoteErr returns what the kubelet reported, if anything: for example
// that nothing listens on the port.
func (c *Conn) RemoteErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteErr
}

// Read reads what the pod sent; it fails with os.ErrDeadlineExceeded once
// the read deadline passes, and the Conn stays usable.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.reader.read(p, c.readDeadline, c.closed)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		if rerr := c.RemoteErr(); rerr != nil {
			return n, fmt.Errorf("port-forward: %w", rerr)
		}
	}
	return n, err
}

// Write sends p to the pod. A write still blocked when the write deadline
// passes fails with os.ErrDeadlineExceeded and closes the Conn: how much
// of p went out is unknown, so the stream cannot go on.
func (c *Conn) Write(p []byte) (int, error) {
	expired, none := c.writeDeadline.state()
	select {
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	default:
	}
	if none {
		return c.data.Write(p)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := c.data.Write(p)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-expired:
		// Closing resets the stream, which ends the blocked write; wait for
		// it, so that p is not touched after Write returns.
		c.Close()
		<-done
		return 0, os.ErrDeadlineExceeded
	}
}

// Close ends the stream and the API connection behind it.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.data.Reset()
		c.conn.Close()
	})
	return nil
}

// Done is closed when the API connection ends.
func (c *Conn) Done() <-chan bool { return c.conn.CloseChan() }

func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

// SetReadDeadline bounds pending and future Reads; zero means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return nil
}

// SetWriteDeadline bounds pending and future Writes; zero means none.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.set(t)
	return nil
}

type addr string

func (a addr) Network() string { return "portforward" }
func (a addr) String() string  { return string(a) }
