package tunnel

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

func TestDial(t *testing.T) {
	client, server := sessions(t, transports()[1], DefaultConfig(testToken), DefaultConfig(testToken))
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	go func() {
		for {
			st, err := server.Accept(context.Background())
			if err != nil {
				return
			}
			go ServeDial(context.Background(), st, func(ctx context.Context, addr string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			})
		}
	}()
	c, err := client.Dial(context.Background(), echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, _ := io.ReadAll(c)
	if string(got) != "hello" {
		t.Errorf("echo through a dial stream: %q", got)
	}
	echo.Close()
	if _, err := client.Dial(context.Background(), echo.Addr().String()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial of a closed port: %v, want the peer's reason (refused)", err)
	}
}
