package tunnel

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Role says what a stream carries. The opener names it in the stream header.
type Role byte

const (
	// RoleControl streams carry the gRPC control API. They are delivered to
	// ControlListener, not Accept.
	RoleControl Role = 1
	// RoleConn streams carry one proxied TCP connection; the header's
	// metadata describes it (defined by the service that opens it).
	RoleConn Role = 2
	// RoleDial streams ask the acceptor to connect to the host:port in the
	// metadata and carry that connection (see Dial and ServeDial).
	RoleDial Role = 3
)

// MaxMetaLen bounds a stream header's metadata.
const MaxMetaLen = 64 << 10

// ErrClosed is returned by Accept and Open once the session is closed.
var ErrClosed = errors.New("tunnel: session closed")

// ErrPeerDead is Err's answer for a session the dead-peer check closed.
var ErrPeerDead = errors.New("tunnel: peer dead (nothing received from it in time)")

// Session is one end of an established tunnel.
type Session struct {
	cfg     Config
	mux     *yamux.Session
	control *listener
	conns   chan *Stream
	deadErr atomic.Pointer[error]
}

// Stream is one yamux stream with the role and metadata its opener sent.
type Stream struct {
	net.Conn
	Role Role
	Meta []byte
}

// CloseWrite half-closes the stream: the peer reads EOF, and this end can
// still read what the peer sends.
func (s *Stream) CloseWrite() error { return s.Conn.Close() }

// Client runs the daemon's end over conn: it proves it holds the token and
// starts the session. On error conn is closed.
func Client(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	return start(ctx, conn, cfg, true)
}

// Server runs the agent's end over conn: it checks the client's token and
// starts the session. On error conn is closed.
func Server(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	return start(ctx, conn, cfg, false)
}

func start(ctx context.Context, conn net.Conn, cfg Config, client bool) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel config: %w", err)
	}
	// The handshake honours ctx, and HandshakeTimeout even on connections
	// without deadlines (port-forward streams), by closing the connection.
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	var err error
	if client {
		err = clientHandshake(conn, cfg)
	} else {
		err = serverHandshake(conn, cfg)
	}
	if !stop() {
		err = errors.Join(hctx.Err(), err)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}

	ycfg := yamux.DefaultConfig()
	// The dead-peer check is ours (liveness.go), not yamux's keepalive.
	ycfg.EnableKeepAlive = false
	ycfg.ConnectionWriteTimeout = cfg.sendQueueTimeout()
	ycfg.MaxStreamWindowSize = cfg.MaxStreamWindow
	ycfg.StreamCloseTimeout = cfg.StreamCloseTimeout
	ycfg.StreamOpenTimeout = cfg.HandshakeTimeout
	ycfg.AcceptBacklog = cfg.AcceptBacklog
	ycfg.LogOutput = io.Discard
	live := newLiveConn(conn)
	var mux *yamux.Session
	if client {
		mux, err = yamux.Client(newCoalescingConn(live), ycfg)
	} else {
		mux, err = yamux.Server(newCoalescingConn(live), ycfg)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel: start session: %w", err)
	}
	s := &Session{
		cfg:     cfg,
		mux:     mux,
		control: newListener(mux.Addr(), mux.CloseChan()),
		conns:   make(chan *Stream, cfg.AcceptBacklog),
	}
	go s.monitor(live)
	go s.acceptLoop()
	return s, nil
}

// Open opens a stream with role and meta. It returns once the peer has the
// header; the peer may still refuse the stream by closing it.
func (s *Session) Open(ctx context.Context, role Role, meta []byte) (*Stream, error) {
	if len(meta) > MaxMetaLen {
		return nil, fmt.Errorf("tunnel: stream metadata is %d bytes, at most %d", len(meta), MaxMetaLen)
	}
	type result struct {
		st  *yamux.Stream
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := s.mux.OpenStream()
		ch <- result{st, err}
	}()
	var st *yamux.Stream
	select {
	case r := <-ch:
		if r.err != nil {
			if s.mux.IsClosed() {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("tunnel: open stream: %w", r.err)
		}
		st = r.st
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.st != nil {
				r.st.Close()
			}
		}()
		return nil, ctx.Err()
	}
	hdr := make([]byte, 1, 1+binary.MaxVarintLen64+len(meta))
	hdr[0] = byte(role)
	hdr = binary.AppendUvarint(hdr, uint64(len(meta)))
	hdr = append(hdr, meta...)
	if deadline, ok := ctx.Deadline(); ok {
		_ = st.SetWriteDeadline(deadline)
	}
	if _, err := st.Write(hdr); err != nil {
		st.Close()
		return nil, fmt.Errorf("tunnel: write stream header: %w", err)
	}
	_ = st.SetWriteDeadline(time.Time{})
	return &Stream{Conn: st, Role: role, Meta: meta}, nil
}

// Accept returns the next stream the peer opened that is not a control
// stream.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	select {
	case st := <-s.conns:
		return st, nil
	case <-s.mux.CloseChan():
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// DialControl opens a control stream; use it as a gRPC context dialer.
func (s *Session) DialControl(ctx context.Context, _ string) (net.Conn, error) {
	return s.Open(ctx, RoleControl, nil)
}

// ControlListener delivers the control streams the peer opens; serve gRPC
// on it.
func (s *Session) ControlListener() net.Listener { return s.control }

// Close ends the session and every stream in it.
func (s *Session) Close() error { return s.mux.Close() }

// Done is closed when the session ends: closed by either side, or the peer
// found dead by the dead-peer check (then Err is ErrPeerDead).
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Err says why the session ended: ErrPeerDead when the dead-peer check
// closed it, else nil (closed by either end, or the connection broke).
func (s *Session) Err() error {
	if e := s.deadErr.Load(); e != nil {
		return *e
	}
	return nil
}

// NumStreams reports how many streams are open.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

func (s *Session) acceptLoop() {
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			return
		}
		go s.route(st)
	}
}

// route reads a new stream's header and hands the stream to its consumer.
func (s *Session) route(st *yamux.Stream) {
	_ = st.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(st, 512)
	role, meta, err := readHeader(br)
	if err != nil {
		s.cfg.logger().Warn("tunnel: dropping stream with a bad header", "stream", st.StreamID(), "err", err)
		st.Close()
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	stream := &Stream{Conn: &bufferedConn{Stream: st, r: br}, Role: role, Meta: meta}
	switch role {
	case RoleControl:
		if !s.control.deliver(stream) {
			st.Close()
		}
	case RoleConn, RoleDial:
		select {
		case s.conns <- stream:
		case <-s.mux.CloseChan():
			st.Close()
		}
	default:
		s.cfg.logger().Warn("tunnel: dropping stream with an unknown role", "stream", st.StreamID(), "role", role)
		st.Close()
	}
}

func readHeader(r *bufio.Reader) (Role, []byte, error) {
	role, err := r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("read role: %w", err)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, fmt.Errorf("read metadata length: %w", err)
	}
	if n > MaxMetaLen {
		return 0, nil, fmt.Errorf("metadata length %d exceeds %d", n, MaxMetaLen)
	}
	meta := make([]byte, n)
	if _, err := io.ReadFull(r, meta); err != nil {
		return 0, nil, fmt.Errorf("read metadata: %w", err)
	}
	return Role(role), meta, nil
}

// bufferedConn reads first what the header reader buffered past the header.
type bufferedConn struct {
	*yamux.Stream
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	return c.Stream.Read(p)
}

// listener is a net.Listener fed with the session's control streams.
type listener struct {
	addr    net.Addr
	streams chan net.Conn
	done    <-chan struct{}
	once    sync.Once
	closed  chan struct{}
}

func newListener(addr net.Addr, done <-chan struct{}) *listener {
	return &listener{addr: addr, streams: make(chan net.Conn), done: done, closed: make(chan struct{})}
}

func (l *listener) deliver(c net.Conn) bool {
	select {
	case l.streams <- c:
		return true
	case <-l.done:
	case <-l.closed:
	}
	return false
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.streams:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	case <-l.closed:
		return nil, ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }
