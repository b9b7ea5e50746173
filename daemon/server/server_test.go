package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
)

// testPaths returns a daemon's paths in a runtime folder of t's own.
func testPaths(t *testing.T) daemon.Paths {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	paths, err := daemon.PathsFor("ctx", "https://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := paths.EnsureDir(); err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestServeSocketIsTheUsersAlone runs the real daemon server on a unix
// socket and checks its permissions, calls through the client, a second
// daemon refused, and Quit removing the socket.
func TestServeSocketIsTheUsersAlone(t *testing.T) {
	paths := testPaths(t)
	// A cluster nobody serves: Status works, without a server version.
	d, err := New(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second}, "ctx", nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- Serve(context.Background(), d, paths.Socket) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var client *daemon.Client
	for client == nil {
		conn, c, err := daemon.Dial(ctx, paths.Socket)
		if err == nil {
			defer conn.Close()
			client = c
			break
		}
		if ctx.Err() != nil {
			t.Fatal("daemon never answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for path, want := range map[string]os.FileMode{paths.Socket: 0o600, paths.Dir: 0o700} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", filepath.Base(path), got, want)
		}
	}
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Context != "ctx" || st.PID != os.Getpid() || st.ServerVersion != "" || len(st.Intercepts) != 0 {
		t.Errorf("status = %+v", st)
	}
	if v, pid, err := client.Identity(ctx); err != nil || v != buildinfo.Identity() || pid != os.Getpid() {
		t.Errorf("Identity = %q, %d, %v; want %q, %d", v, pid, err, buildinfo.Identity(), os.Getpid())
	}
	if err := client.Leave(ctx, "ns", "deploy/x"); err == nil {
		t.Error("Leave on an unreachable cluster succeeded")
	}
	if err := Serve(ctx, d, paths.Socket); !errors.Is(err, ErrRunning) {
		t.Errorf("a second daemon on the socket: %v, want ErrRunning", err)
	}
	if err := client.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(paths.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Quit: %v", err)
	}
}

// TestQuitThenANewDaemon: once Quit returns, the socket takes no more
// connections, so the next command starts a new daemon on it; the old
// daemon, ending after that, leaves the new one's socket in place (it
// removed it, and the new daemon could not be reached).
func TestQuitThenANewDaemon(t *testing.T) {
	paths := testPaths(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func() (*daemon.Client, chan error) {
		d, err := New(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second}, "ctx", nil)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- Serve(ctx, d, paths.Socket) }()
		for {
			conn, c, err := daemon.Dial(ctx, paths.Socket)
			if err == nil {
				if _, _, err := c.Identity(ctx); err == nil {
					t.Cleanup(func() { conn.Close() })
					return c, served
				}
				conn.Close()
			}
			if ctx.Err() != nil {
				t.Fatal("daemon never answered")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	old, oldServed := start()
	if err := old.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	next, nextServed := start()
	if err := <-oldServed; err != nil {
		t.Fatalf("old Serve: %v", err)
	}
	if _, err := os.Stat(paths.Socket); err != nil {
		t.Fatalf("the new daemon's socket is gone after the old one ended: %v", err)
	}
	if _, _, err := next.Identity(ctx); err != nil {
		t.Errorf("the new daemon: %v", err)
	}
	if err := next.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-nextServed; err != nil {
		t.Fatalf("new Serve: %v", err)
	}
}
