package portforward

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// pipeStream is an httpstream.Stream over one end of a net.Pipe.
type pipeStream struct{ net.Conn }

func (s pipeStream) Reset() error         { return s.Conn.Close() }
func (s pipeStream) Headers() http.Header { return http.Header{} }
func (s pipeStream) Identifier() uint32   { return 1 }

// fakeConnection is an httpstream.Connection that only closes.
type fakeConnection struct{ done chan bool }

func (c *fakeConnection) CreateStream(http.Header) (httpstream.Stream, error) {
	return nil, errors.New("not supported")
}
func (c *fakeConnection) Close() error                       { close(c.done); return nil }
func (c *fakeConnection) CloseChan() <-chan bool             { return c.done }
func (c *fakeConnection) SetIdleTimeout(time.Duration)       {}
func (c *fakeConnection) RemoveStreams(...httpstream.Stream) {}

// pipeConn returns a Conn and the pod's end of its stream.
func pipeConn(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	c := newConn(&fakeConnection{done: make(chan bool)}, pipeStream{a}, addr("local"), addr("pod"))
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, b
}

func TestReadDeadline(t *testing.T) {
	c, pod := pipeConn(t)
	buf := make([]byte, 16)

	// A deadline in the past fails at once; the Conn stays usable.
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a net.Error that is a timeout", err)
	}

	// A deadline that passes while a Read waits ends the Read.
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read waiting past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}

	// Cleared, a Read gets what the pod sends, nothing lost.
	c.SetReadDeadline(time.Time{})
	go pod.Write([]byte("hello"))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read after clearing the deadline: %q, %v", buf[:n], err)
	}
	// Without a deadline and nothing in flight, Reads read the stream
	// itself, in order.
	go pod.Write([]byte("world"))
	if n, err := io.ReadFull(c, buf[:5]); err != nil || string(buf[:n]) != "world" {
		t.Fatalf("read without a deadline: %q, %v", buf[:n], err)
	}

	// Moving the deadline while a Read waits applies to that Read.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after the deadline moved: %v", err)
		}
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("moving the deadline did not end the waiting Read")
	}
}

func TestWriteDeadline(t *testing.T) {
	c, pod := pipeConn(t)
	// net.Pipe has no buffer: with the pod not reading, a Write blocks.
	c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked write past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	// The timed-out write closed the Conn.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a Conn closed by a write timeout succeeded")
	}
	if _, err := pod.Read(make([]byte, 1)); err == nil {
		t.Error("the pod side read after the Conn was closed by a write timeout")
	}
}

// TestWriteWithoutDeadline: with no deadline, or one far away, a Write
// reaches the pod.
func TestWriteWithoutDeadline(t *testing.T) {
	for _, d := range []time.Duration{0, time.Hour} {
		c, pod := pipeConn(t)
		go func() {
			if d > 0 {
				c.SetWriteDeadline(time.Now().Add(d))
			}
			c.Write([]byte("hi"))
		}()
		buf := make([]byte, 2)
		if _, err := io.ReadFull(pod, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("deadline %s: pod read %q, %v", d, buf, err)
		}
	}
}
