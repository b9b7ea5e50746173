package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/tunnel"
)

var linkToken = []byte("link-test-token-0123456789")

// fakeAgent answers Info, as the agent's gRPC server would.
type fakeAgent struct {
	agentv1.UnimplementedAgentServer
}

func (fakeAgent) Info(context.Context, *agentv1.InfoRequest) (*agentv1.InfoResponse, error) {
	return &agentv1.InfoResponse{PodName: "orders-1"}, nil
}

// connectPipe links to a fake agent over a pipe and returns the link and
// the agent's side of the tunnel.
func connectPipe(t *testing.T) (*Link, *tunnel.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := net.Pipe()
	agentSide := make(chan *tunnel.Session, 1)
	go func() {
		s, err := tunnel.Server(ctx, b, tunnel.DefaultConfig(linkToken))
		if err != nil {
			t.Error(err)
			agentSide <- nil
			return
		}
		srv := grpc.NewServer()
		agentv1.RegisterAgentServer(srv, fakeAgent{})
		go srv.Serve(s.ControlListener())
		t.Cleanup(srv.Stop)
		agentSide <- s
	}()
	link, err := Connect(ctx, a, tunnel.DefaultConfig(linkToken))
	if err != nil {
		t.Fatal(err)
	}
	sess := <-agentSide
	if sess == nil {
		t.FailNow()
	}
	t.Cleanup(func() { link.Close(); sess.Close() })
	return link, sess
}

// closedSoon reports whether the daemon's side closes c: a read ends.
func closedSoon(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang guard
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func TestLinkCallsTheAgent(t *testing.T) {
	link, _ := connectPipe(t)
	info, err := link.Agent().Info(context.Background())
	if err != nil || info.PodName != "orders-1" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

// TestLinkRefusesControlStreams: the daemon serves nothing on control
// streams; one the agent opens is closed at once.
func TestLinkRefusesControlStreams(t *testing.T) {
	_, sess := connectPipe(t)
	st, err := sess.Open(context.Background(), tunnel.RoleControl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !closedSoon(t, st) {
		t.Error("a control stream the agent opened was not closed")
	}
}

// TestLinkAcceptsConnStreamsOnly: AcceptConn, called in a loop as the
// daemon does, refuses a dial stream the agent opens and returns the conn
// stream.
func TestLinkAcceptsConnStreamsOnly(t *testing.T) {
	link, sess := connectPipe(t)
	ctx := context.Background()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := link.AcceptConn(ctx)
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial, err := sess.Open(ctx, tunnel.RoleDial, []byte("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sess.Open(ctx, tunnel.RoleConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	go conn.Write([]byte("hi"))
	if !closedSoon(t, dial) {
		t.Error("a dial stream the agent opened was not closed")
	}
	select {
	case got := <-accepted:
		buf := make([]byte, 2)
		if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "hi" {
			t.Errorf("accepted stream read %q, %v; want the conn stream's hi", buf, err)
		}
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("the conn stream was never accepted")
	}
	select {
	case c := <-accepted:
		t.Errorf("a second stream was accepted: %v", c)
	default:
	}
}

// TestLinkDial connects from the "pod" through a dial stream.
func TestLinkDial(t *testing.T) {
	link, sess := connectPipe(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("pod"))
			c.Close()
		}
	}()
	go func() {
		st, err := sess.Accept(context.Background())
		if err == nil {
			tunnel.ServeDial(context.Background(), st, func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			})
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := link.Dial(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "pod" {
		t.Errorf("dialed connection read %q, %v", b, err)
	}
}

// TestLinkEnded: Ended is false while the tunnel is up, true once the
// agent's side closed it.
func TestLinkEnded(t *testing.T) {
	link, sess := connectPipe(t)
	if link.Ended() {
		t.Fatal("Ended while the tunnel is up")
	}
	sess.Close()
	select {
	case <-link.Done():
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("the link did not end after the agent closed its side")
	}
	if !link.Ended() {
		t.Error("not Ended after Done closed")
	}
}
