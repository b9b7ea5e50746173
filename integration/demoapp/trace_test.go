package demoapp

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestGetSaysWhereItFailed: a failed get names the step it was in, so a
// test's hung request tells a lookup from a connect from a silent server.
func TestGetSaysWhereItFailed(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // accepted, never answered
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	_, silentPort, _ := net.SplitHostPort(silent.Addr().String())

	for _, c := range []struct {
		name, url string
		want      []string
	}{
		{"silent server", "http://" + silent.Addr().String() + "/healthz",
			[]string{"context deadline exceeded", "connected to " + silent.Addr().String() + " at ", "waiting for the answer since "}},
		{"name looked up, silent server", "http://localhost:" + silentPort + "/healthz",
			[]string{"looked up: ", "connected to ", "waiting for the answer since "}},
		{"refused", "http://" + closedAddr + "/healthz",
			[]string{"connect to " + closedAddr + " failed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := Main(ctx, []string{"get", c.url}, io.Discard)
			if err == nil {
				t.Fatal("get succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
