package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/localsock"

	"google.golang.org/grpc"

	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// ErrRunning means another daemon already serves the socket.
var ErrRunning = errors.New("a daemon already runs for this context")

// Serve serves d on the unix socket at path until ctx ends or Quit is
// called, then ends every intercept and removes the socket.
func Serve(ctx context.Context, d *Daemon, path string) error {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%w (socket %s)", ErrRunning, path)
	}
	_ = os.Remove(path) // a stale socket of a daemon that died
	if err := localsock.CheckDir(filepath.Dir(path)); err != nil {
		return err
	}
	// Only processes of the daemon's user are served, whatever the modes.
	lis, err := localsock.Listen(path, d.log)
	if err != nil {
		return err
	}
	defer removeOwn(path, lis)
	// Runs' processes ask for their connections on a socket of their own,
	// guarded the same way (daemon/rundial.md).
	// Without it the daemon still serves everything else; a run says why
	// its process cannot dial (daemon.DialRun).
	dialPath := daemon.DialSocketFor(path)
	_ = os.Remove(dialPath)
	var dl *localsock.Listener
	if dl, err = localsock.Listen(dialPath, d.log); err != nil {
		d.log.Warn("no dial socket for tether run: --forward and the namespace mode will fail", "err", err)
	} else {
		defer removeOwn(dialPath, dl)
		defer dl.Close()
		d.mu.Lock()
		d.dialSocket = dialPath
		d.mu.Unlock()
		go d.serveDialSocket(ctx, dl)
	}
	// A replay carries the exchanges it replays: up to a recording budget.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(256 << 20))
	daemonv1.RegisterDaemonServer(srv, NewGRPCServer(d))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	d.log.Info("daemon serving", "socket", path, "pid", os.Getpid())
	select {
	case <-ctx.Done():
	case <-d.Quitting():
	case err := <-served:
		return err
	}
	// No more connections: a command after quit starts a new daemon,
	// which this one's cleanup must leave alone (removeOwn).
	lis.Close()
	if dl != nil {
		dl.Close()
	}
	close(d.unlistened)
	lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.LeaveAll(lctx)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	d.log.Info("daemon stopped")
	return nil
}

// removeOwn removes the socket l listens on at path, unless another
// daemon's socket took the path since (one started after this one quit).
func removeOwn(path string, l *localsock.Listener) {
	if fi := statOrNil(path); fi == nil || !os.SameFile(l.File, fi) {
		return
	}
	_ = os.Remove(path)
}

func statOrNil(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}
