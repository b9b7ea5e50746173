package readyprobe

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recordingApp accepts connections, optionally greets, and sends what each
// received, once it ends, on got.
func recordingApp(t *testing.T, greeting string) (addr string, got chan []byte) {
	got = make(chan []byte, 16)
	addr = serve(t, func(c net.Conn) {
		defer c.Close()
		if greeting != "" {
			c.Write([]byte(greeting))
		}
		b, _ := io.ReadAll(c)
		got <- b
	})
	return addr, got
}

func next(t *testing.T, got chan []byte) []byte {
	t.Helper()
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second): // hang guard
		t.Fatal("the app saw no connection end")
		return nil
	}
}

// TestWatchAnswersOnlyExpectedNonces: through the plain path, a probe
// with an expected nonce is answered with the pod's name and the app
// gets none of its bytes; a probe with another nonce, or while nothing is
// expected, is forwarded as ordinary bytes; other traffic is untouched.
func TestWatchAnswersOnlyExpectedNonces(t *testing.T) {
	app, got := recordingApp(t, "")
	s := NewNonces(nil)
	front := agentAt(t, s, "orders-1", app)
	n := nonce(9)

	send := func(b []byte) (answer []byte) {
		c, err := net.Dial("tcp", front)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(b)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang guard
		a, _ := io.ReadAll(c)
		return a
	}

	// Nothing expected: the marker is just bytes.
	if a := send(Marker(n)); len(a) != 0 {
		t.Errorf("answered %q while no nonce was expected", a)
	}
	if b := next(t, got); !bytes.Equal(b, Marker(n)) {
		t.Errorf("app got %q, want the marker forwarded", b)
	}

	s.Expect(n, time.Minute)
	pod, err := ReadAnswer(bytes.NewReader(send(Marker(n))), n)
	if err != nil || pod != "orders-1" {
		t.Errorf("answer = %q, %v; want orders-1", pod, err)
	}
	if b := next(t, got); len(b) != 0 {
		t.Errorf("app got %q of a probe, want nothing", b)
	}

	other := nonce(10)
	if a := send(Marker(other)); len(a) != 0 {
		t.Errorf("answered %q to a nonce never expected", a)
	}
	if b := next(t, got); !bytes.Equal(b, Marker(other)) {
		t.Errorf("app got %q, want the stranger's marker forwarded", b)
	}

	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	send(req)
	if b := next(t, got); !bytes.Equal(b, req) {
		t.Errorf("app got %q, want %q", b, req)
	}
}

// countingConn counts Reads.
type countingConn struct {
	net.Conn
	reads atomic.Int32
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

// TestWatchServerFirst: while a nonce is expected, a client of a protocol
// where the server speaks first (SMTP-like) gets the greeting without
// sending a byte: Watch reads nothing on its own, the check rides on the
// copy's first read.
func TestWatchServerFirst(t *testing.T) {
	s := NewNonces(nil)
	s.Expect(nonce(1), time.Minute)

	a, b := net.Pipe()
	cc := &countingConn{Conn: a}
	w := s.Watch(cc, "orders-1")
	if w == net.Conn(cc) {
		t.Fatal("Watch did not watch while a nonce is expected")
	}
	if n := cc.reads.Load(); n != 0 {
		t.Errorf("Watch read %d times by itself", n)
	}
	a.Close()
	b.Close()

	app, _ := recordingApp(t, "220 mail.example ESMTP\r\n")
	front := agentAt(t, s, "orders-1", app)
	c, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // hang guard
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		t.Errorf("greeting = %q, %v; want 220", line, err)
	}
}

func TestWatchIdleIsUnwrapped(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if w := NewNonces(nil).Watch(a, "p"); w != a {
		t.Error("Watch wrapped a connection while no nonce is expected")
	}
}
