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

// TestServeSocketIsTheUsersAlone runs the real daemon server on a unix
// socket and checks its permissions, calls through the client, a second
// daemon refused, and Quit removing the socket.
func TestServeSocketIsTheUsersAlone(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	paths, err := daemon.PathsFor("ctx", "https://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := paths.EnsureDir(); err != nil {
		t.Fatal(err)
	}
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
