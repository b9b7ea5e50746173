package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"
)

// TestJoinHalfClose proxies a TCP client through a tunnel stream to a TCP
// server that answers only after reading the client's EOF: the half-close
// must cross the join and the tunnel, and the answer must come back.
func TestJoinHalfClose(t *testing.T) {
	client, server := sessions(t, transports()[1], DefaultConfig(testToken), DefaultConfig(testToken))

	// backend: reads all, then writes back what it read, reversed.
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
					b[i], b[j] = b[j], b[i]
				}
				c.Write(b)
			}()
		}
	}()
	// server end of the tunnel: join each stream with a backend connection.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		for {
			st, err := server.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				c, err := net.Dial("tcp", backend.Addr().String())
				if err != nil {
					st.Close()
					return
				}
				Join(st, c)
			}()
		}
	}()
	// front: a TCP listener whose connections are joined into the tunnel.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			go func() {
				st, err := client.Open(ctx, RoleConn, nil)
				if err != nil {
					c.Close()
					return
				}
				Join(c, st)
			}()
		}
	}()

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(payload)-1; i < j; i, j = i+1, j-1 {
		payload[i], payload[j] = payload[j], payload[i]
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("got %d bytes back, want the %d sent, reversed", len(got), len(payload))
	}
}

// TestCopier: every byte arrives in order whatever the reads return (full
// buffers switch to the large buffer, small reads back), and the count and
// errors are io.Copy's, for Join's copier and tether run's size.
func TestCopier(t *testing.T) {
	for _, c := range []*Copier{joinCopier, NewCopier(256 << 10)} {
		testCopier(t, c)
	}
}

func testCopier(t *testing.T, c *Copier) {
	data := make([]byte, 3<<20+123)
	_, _ = rand.Read(data)
	for name, src := range map[string]func() io.Reader{
		"bulk":       func() io.Reader { return bytes.NewReader(data) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half reads": func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := c.Copy(&out, src())
			if err != nil || n != int64(len(data)) {
				t.Fatalf("copyAdaptive: %d, %v; want %d, nil", n, err, len(data))
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Errorf("copied %d bytes that differ from the %d sent", out.Len(), len(data))
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		if _, err := c.Copy(io.Discard, iotest.ErrReader(io.ErrUnexpectedEOF)); err != io.ErrUnexpectedEOF {
			t.Errorf("copyAdaptive: %v, want the read error", err)
		}
	})
	t.Run("short write", func(t *testing.T) {
		if _, err := c.Copy(shortWriter{}, bytes.NewReader(data)); err != io.ErrShortWrite {
			t.Errorf("copyAdaptive: %v, want io.ErrShortWrite", err)
		}
	})
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }
