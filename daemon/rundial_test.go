package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherkube/tether/internal/localsock"
)

// serveDial serves a dial socket whose only run is "run1": it connects to
// echo servers by their loopback address, and fails for "bad:1".
func serveDial(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tether")
	if err := localsock.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	path := DialSocketFor(filepath.Join(dir, "d-x.sock"))
	l, err := localsock.Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dial := func(ctx context.Context, id, addr string) (net.Conn, error) {
		if id != "run1" {
			return nil, ErrRunUnknown
		}
		if addr == "bad:1" {
			return nil, errors.New("dial tcp: lookup bad: no such host")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go ServeDialConn(context.Background(), c, dial)
		}
	}()
	return path
}

// echo answers each connection with what it read, once the client
// half-closed.
func echo(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("echo:"), b...))
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

func TestDialRun(t *testing.T) {
	sock := serveDial(t)
	target := echo(t)
	ctx := context.Background()

	c, err := DialRun(ctx, sock, "run1", target)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "hello")
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "echo:hello" {
		t.Errorf("got %q through the half-closed connection, want echo:hello", got)
	}

	tests := []struct {
		name, run, addr string
		want            error
		wantMsg         string
	}{
		{"unknown run", "nope", target, ErrRunUnknown, ""},
		{"the pod cannot connect", "run1", "bad:1", nil, "no such host"},
		{"a space in the address", "run1", "a b:1", nil, "no spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DialRun(ctx, sock, tt.run, tt.addr)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}
