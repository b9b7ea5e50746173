//go:build linux

package localsock

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestCheckDir(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		name string
		mode os.FileMode
		want error
	}{
		{"private", 0o700, nil},
		{"open to the group", 0o750, ErrUnsafeDir},
		{"open to all", 0o777, ErrUnsafeDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, tt.name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, tt.mode)
			if err := CheckDir(dir); !errors.Is(err, tt.want) {
				t.Errorf("CheckDir(%04o) = %v, want %v", tt.mode, err, tt.want)
			}
		})
	}
	link := filepath.Join(base, "link")
	os.Symlink(filepath.Join(base, "private"), link)
	if err := CheckDir(link); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("CheckDir(symlink) = %v, want ErrUnsafeDir", err)
	}
}

func TestEnsureDirCreatesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tether")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %04o, want 0700", fi.Mode().Perm())
	}
}

// TestForeignPeerRefused: a process of another user that can reach the
// socket file is closed at once, while the user's own connection is served.
// It needs root to run a process as another uid.
func TestForeignPeerRefused(t *testing.T) {
	if os.Getenv("LOCALSOCK_DIAL") != "" {
		c, err := net.Dial("unix", os.Getenv("LOCALSOCK_DIAL"))
		if err != nil {
			os.Exit(2)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			os.Exit(0) // served
		}
		os.Exit(1) // closed
	}
	if os.Getuid() != 0 {
		t.Fatal("this test runs a process as another user and needs root (make test runs as root)")
	}
	// A folder another user can enter (t.TempDir's parents are private).
	dir, err := os.MkdirTemp("", "localsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "d.sock")
	lis, err := Listen(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	os.Chmod(path, 0o666) // as if the mode were wrong: the peer check must still hold
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	// The test binary, copied where the other user may run it.
	self := filepath.Join(dir, "localsock.test")
	if b, err := os.ReadFile(must(os.Executable())); err != nil || os.WriteFile(self, b, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	run := func(uid uint32) int {
		cmd := exec.Command(self, "-test.run=^TestForeignPeerRefused$")
		cmd.Env = append(os.Environ(), "LOCALSOCK_DIAL="+path)
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
		t.Errorf("own user: exit %d, want 0 (served)", code)
	}
	if code := run(65534); code != 1 {
		t.Errorf("another user: exit %d, want 1 (closed unserved)", code)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
