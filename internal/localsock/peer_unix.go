//go:build linux || darwin || freebsd || netbsd || openbsd

package localsock

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// restrict lets only the user connect to the socket at path.
func restrict(path string) error { return os.Chmod(path, 0o600) }

// ownedByUser reports whether the user owns fi.
func ownedByUser(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

func checkOwner(dir string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); int(st.Uid) != uid {
		return fmt.Errorf("%w: %s belongs to uid %d, not to you (uid %d); remove it, or set XDG_RUNTIME_DIR to a folder of yours", ErrUnsafeDir, dir, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, open to other users; `chmod 700 %s`", ErrUnsafeDir, dir, perm, dir)
	}
	return nil
}

// CheckPeer checks that the process at the other end of c runs as this
// user. c must be a unix socket connection.
func CheckPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%w: not a unix socket (%T)", ErrForeignPeer, c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var uid int
	var perr error
	if err := raw.Control(func(fd uintptr) { uid, perr = peerUID(int(fd)) }); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("read the peer's credentials: %w", perr)
	}
	if me := os.Getuid(); uid != me {
		return fmt.Errorf("%w: uid %d (the daemon runs as uid %d)", ErrForeignPeer, uid, me)
	}
	return nil
}
