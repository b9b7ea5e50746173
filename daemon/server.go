package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// Paths locate one daemon's socket and log file.
type Paths struct {
	Dir    string `json:"dir"`
	Socket string `json:"socket"`
	Log    string `json:"log"`
}

// PathsFor returns the paths of the daemon for a kube context and API
// server: under $XDG_RUNTIME_DIR/tether, else the user's cache folder,
// in a folder only the user can enter.
func PathsFor(kubeContext, server string) (Paths, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return Paths{}, fmt.Errorf("find a folder for the daemon's socket: %w", err)
		}
		base = cache
	}
	dir := filepath.Join(base, "tether")
	sum := sha256.Sum256([]byte(kubeContext + "\x00" + server))
	id := hex.EncodeToString(sum[:6])
	return Paths{Dir: dir, Socket: filepath.Join(dir, "d-"+id+".sock"), Log: filepath.Join(dir, "d-"+id+".log")}, nil
}

// EnsureDir creates the paths' folder, readable by its user only.
func (p Paths) EnsureDir() error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(p.Dir, 0o700)
}

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
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	defer os.Remove(path)
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return err
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

// Dial connects to the daemon at the socket; it fails fast when none runs.
func Dial(ctx context.Context, path string) (*grpc.ClientConn, *Client, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("no daemon at %s: %w", path, err)
	}
	c.Close()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return conn, NewClient(conn), nil
}
