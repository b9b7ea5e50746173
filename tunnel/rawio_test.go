package tunnel

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// closedTCPPair is tcpPair, both ends closed at the test's end.
func closedTCPPair(t testing.TB) (client, server net.Conn) {
	client, server = tcpPair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// rawPair is a TCP pair read and written through RawIO at both ends.
func rawPair(t testing.TB) (net.Conn, net.Conn) {
	c, s := closedTCPPair(t)
	return RawIO(c), RawIO(s)
}

func TestRawIOOnlyWrapsTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := RawIO(a); got != a {
		t.Errorf("RawIO(pipe) = %T, want the pipe itself", got)
	}
	c, _ := closedTCPPair(t)
	_, isTCP := RawIO(c).(*net.TCPConn)
	if want := runtime.GOOS != "linux"; isTCP != want {
		t.Errorf("RawIO(TCP) is a *net.TCPConn: %v, want %v on %s", isTCP, want, runtime.GOOS)
	}
}

// TestRawIOCarriesBulkAndHalfClose sends more than the socket buffers
// hold to a slow reader (so writes wait for the buffer to drain), then
// half-closes: the reader gets every byte and EOF, and still answers.
func TestRawIOCarriesBulkAndHalfClose(t *testing.T) {
	c, s := closedTCPPair(t)
	rc, rs := RawIO(c), RawIO(s)
	data := make([]byte, 8<<20)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		if _, err := rc.Write(data); err != nil {
			errc <- err
			return
		}
		errc <- rc.(closeWriter).CloseWrite()
	}()
	time.Sleep(50 * time.Millisecond) // let the buffers fill
	var got bytes.Buffer
	buf := make([]byte, 1000) // small reads: many of them
	for {
		n, err := rs.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got.Len(), err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("write and half-close: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes that differ from the %d written", got.Len(), len(data))
	}
	if _, err := rs.Write([]byte("done")); err != nil {
		t.Fatalf("answer after the peer's half-close: %v", err)
	}
	rs.(closeWriter).CloseWrite()
	answer, err := io.ReadAll(rc)
	if err != nil || string(answer) != "done" {
		t.Fatalf("answer = %q, %v; want \"done\", nil", answer, err)
	}
}

func TestRawIODeadlineAndClose(t *testing.T) {
	c, _ := closedTCPPair(t)
	rc := RawIO(c)
	rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rc.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	rc.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := rc.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	rc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read interrupted by Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	if _, err := rc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

// TestRawIOPeerReset: a write to a peer that is gone fails, rather than
// waiting or reporting success for ever.
func TestRawIOPeerReset(t *testing.T) {
	c, s := closedTCPPair(t)
	s.(*net.TCPConn).SetLinger(0) // close with a reset
	s.Close()
	rc := RawIO(c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := rc.Write(make([]byte, 64<<10)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a reset connection still succeed after 5 s")
		}
	}
}
