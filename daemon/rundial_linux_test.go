//go:build linux

package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tetherkube/tether/internal/localsock"
)

// TestDialSocketRefusesOtherUsers: a process of another user that can
// reach the dial socket file, and knows the run's id, gets no connection
// from the pod; the user's own process does. It needs root to run a
// process as another uid.
func TestDialSocketRefusesOtherUsers(t *testing.T) {
	if sock := os.Getenv("RUNDIAL_SOCKET"); sock != "" {
		c, err := DialRun(context.Background(), sock, "run1", os.Getenv("RUNDIAL_ADDR"))
		if err != nil {
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	if os.Getuid() != 0 {
		t.Fatal("this test runs a process as another user and needs root (make test runs as root)")
	}
	// A folder and a socket others may reach, as if the modes were wrong:
	// the peer check must hold alone.
	dir, err := os.MkdirTemp("", "rundial")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "d.dial.sock")
	l, err := localsock.Listen(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chmod(sock, 0o666)
	target := echo(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go ServeDialConn(context.Background(), c, func(ctx context.Context, id, addr string) (net.Conn, error) {
				return net.Dial("tcp", addr)
			})
		}
	}()
	self := filepath.Join(dir, "daemon.test")
	exe, _ := os.Executable()
	if b, err := os.ReadFile(exe); err != nil || os.WriteFile(self, b, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	run := func(uid uint32) int {
		cmd := exec.Command(self, "-test.run=^TestDialSocketRefusesOtherUsers$")
		cmd.Env = append(os.Environ(), "RUNDIAL_SOCKET="+sock, "RUNDIAL_ADDR="+target)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run as uid %d: %v", uid, err)
		}
		return 0
	}
	if code := run(0); code != 0 {
		t.Errorf("own user: exit %d, want 0 (connected)", code)
	}
	if code := run(65534); code != 1 {
		t.Errorf("another user: exit %d, want 1 (refused)", code)
	}
}
