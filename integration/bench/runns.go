package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// nsUser is the unprivileged user the namespace-mode rows run as when the
// bench runs as root (`make bench`): tether's namespace mode is for users,
// as on a laptop. It is the user cli/internal/netns's tests use, created
// the same way when missing.
const nsUser = "tether-netns-test"

// nsRunner runs tether and runclient for the namespace-mode rows: as
// nsUser with its own home, runtime dir (so its own daemon) and copies of
// the binaries and kubeconfig when the bench runs as root, else as the
// caller with a runtime dir of its own.
type nsRunner struct {
	dir        string // readable by the user: tether, runclient, kubeconfig
	home       string
	tether     string
	client     string
	kubeconfig string
	cred       *syscall.Credential
	uid, gid   int
}

func newNSRunner(tmp, tetherBin, client, kubeconfig string) (*nsRunner, error) {
	dir := filepath.Join(tmp, "ns")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	r := &nsRunner{dir: dir, home: filepath.Join(dir, "home"), tether: filepath.Join(dir, "tether"),
		client: filepath.Join(dir, "runclient"), kubeconfig: filepath.Join(dir, "home", "kubeconfig"),
		uid: os.Geteuid(), gid: os.Getegid()}
	if err := os.Mkdir(r.home, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := ensureNSUser()
		if err != nil {
			return nil, err
		}
		r.uid, r.gid = u[0], u[1]
		r.cred = &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}
		if st, err := os.Stat("/dev/net/tun"); err != nil {
			return nil, fmt.Errorf("the namespace mode needs /dev/net/tun: %w", err)
		} else if st.Mode().Perm() != 0o666 {
			// The mode Debian and Ubuntu ship it with.
			if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
				return nil, err
			}
		}
	}
	for _, f := range []struct {
		src, dst string
		mode     os.FileMode
	}{{tetherBin, r.tether, 0o755}, {client, r.client, 0o755}, {kubeconfig, r.kubeconfig, 0o600}} {
		if err := copyFileMode(f.src, f.dst, f.mode); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{r.home, r.kubeconfig} {
		if err := os.Chown(p, r.uid, r.gid); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ensureNSUser returns nsUser's uid and gid, adding the user when missing.
func ensureNSUser() ([2]int, error) {
	u, err := user.Lookup(nsUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", nsUser).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("already exists")) {
			return [2]int{}, fmt.Errorf("useradd %s: %v: %s", nsUser, err, out)
		}
		if u, err = user.Lookup(nsUser); err != nil {
			return [2]int{}, err
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return [2]int{uid, gid}, nil
}

// mkdirFor makes a folder the user can write (profiles).
func (r *nsRunner) mkdirFor(p string) error {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.Chown(p, r.uid, r.gid)
}

// cmd runs name (tether or runclient, as r's copies) with r's identity;
// profileDir, when set, is handed to tether as TETHER_PROFILE_DIR.
func (r *nsRunner) cmd(ctx context.Context, profileDir, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = r.home
	c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + r.home, "XDG_RUNTIME_DIR=" + r.home, "KUBECONFIG=" + r.kubeconfig}
	if profileDir != "" {
		c.Env = append(c.Env, "TETHER_PROFILE_DIR="+profileDir)
	}
	if r.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	}
	return c
}

func copyFileMode(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
