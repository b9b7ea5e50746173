// Package localsock guards the daemon's unix socket: the folder it lives in
// must belong to the user and be closed to everyone else, and a connection
// is served only when the peer process runs as the same user. The file
// mode alone is not enough: a folder another user created first (in a
// shared cache or runtime folder), or a mode changed later, would let that
// user drive the daemon with this user's cluster credentials.
package localsock

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// ErrUnsafeDir: the socket's folder could let another user in.
var ErrUnsafeDir = errors.New("the daemon's folder is not private to this user")

// ErrForeignPeer: a process of another user connected.
var ErrForeignPeer = errors.New("the peer runs as another user")

// EnsureDir creates dir (mode 0700) when missing, closes a folder of the
// user's that is open to others, and checks that it is a folder owned by
// the user and closed to group and others.
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() && checkOwner(dir, fi) != nil && ownedByUser(fi) {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("close %s to other users: %w", dir, err)
		}
	}
	return CheckDir(dir)
}

// CheckDir checks that dir is a folder owned by the user, closed to group
// and others. It does not change anything: a folder that fails is the
// user's to look at.
func CheckDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a folder (a symlink or file stands there); remove it and run tether again", ErrUnsafeDir, dir)
	}
	return checkOwner(dir, fi)
}

// Listener serves only peers of the same user; others are closed at once
// and logged.
type Listener struct {
	net.Listener
	Log *slog.Logger
	// File is the socket file as Listen made it. Closing the listener
	// does not remove it: its owner removes it when the path still names
	// this file (another process may have replaced it since).
	File os.FileInfo
}

// Listen listens on the unix socket at path, mode 0600, in a folder that
// CheckDir accepts.
func Listen(path string, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := restrict(path); err != nil {
		lis.Close()
		return nil, fmt.Errorf("restrict %s to its user: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		lis.Close()
		return nil, err
	}
	if ul, ok := lis.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	return &Listener{Listener: lis, Log: log, File: fi}, nil
}

// Accept returns the next connection from a process of the same user.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := CheckPeer(c); err != nil {
			l.Log.Warn("refused a connection to the daemon's socket", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}
