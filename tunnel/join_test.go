package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
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
