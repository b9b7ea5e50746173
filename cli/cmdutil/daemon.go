package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Target is the kube context a command works on and its daemon's paths.
type Target struct {
	Context   string
	Server    string
	Namespace string
	Paths     daemon.Paths
}

// Target resolves --kubeconfig, --context and -n as kubectl does.
func (f *Factory) Target() (Target, error) {
	loader := f.KubeConfig.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return Target{}, errdefs.User("read kubeconfig: %v", err)
	}
	ctxName := raw.CurrentContext
	if f.Flags != nil && f.Flags.Context != nil && *f.Flags.Context != "" {
		ctxName = *f.Flags.Context
	}
	rc, err := f.KubeConfig.ToRESTConfig()
	if err != nil {
		return Target{}, errdefs.User("no usable kube context (%v): set KUBECONFIG or pass --kubeconfig/--context", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return Target{}, errdefs.User("resolve namespace: %v", err)
	}
	paths, err := daemon.PathsFor(ctxName, rc.Host)
	if err != nil {
		return Target{}, err
	}
	return Target{Context: ctxName, Server: rc.Host, Namespace: ns, Paths: paths}, nil
}

// ErrNoDaemon means no daemon runs for the context.
var ErrNoDaemon = errors.New("no tether daemon runs for this context")

// Daemon returns a client of the context's daemon, starting the daemon
// first when start is set. close releases the connection.
func (f *Factory) Daemon(ctx context.Context, start bool) (*daemon.Client, func(), error) {
	t, err := f.Target()
	if err != nil {
		return nil, nil, err
	}
	if conn, c, err := daemon.Dial(ctx, t.Paths.Socket); err == nil {
		// A daemon of another build (tether was upgraded or rebuilt) is
		// replaced, when we may start one, so CLI and daemon always agree.
		version, _, err := c.Identity(ctx)
		if err == nil && (version == buildinfo.Identity() || !start) {
			return c, func() { conn.Close() }, nil
		}
		if err == nil {
			_ = c.Quit(ctx)
			waitGone(t.Paths.Socket)
		}
		conn.Close()
	}
	if !start {
		return nil, nil, fmt.Errorf("%w (context %s): `tether connect` starts one", ErrNoDaemon, t.Context)
	}
	if err := f.startDaemon(t); err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, c, err := daemon.Dial(ctx, t.Paths.Socket)
		if err == nil {
			return c, func() { conn.Close() }, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("the daemon did not start within 15s; see its log: %s", t.Paths.Log)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startDaemon runs `tether daemon run` in the background, in its own
// session, logging to the context's log file.
func (f *Factory) startDaemon(t Target) error {
	if err := t.Paths.EnsureDir(); err != nil {
		return fmt.Errorf("create %s: %w", t.Paths.Dir, err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"daemon", "run", "--context", t.Context}
	if f.Flags != nil && f.Flags.KubeConfig != nil && *f.Flags.KubeConfig != "" {
		args = append(args, "--kubeconfig", *f.Flags.KubeConfig)
	}
	logf, err := os.OpenFile(t.Paths.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the daemon: %w", err)
	}
	return cmd.Process.Release()
}

// waitGone waits, briefly, until nothing answers on the socket.
func waitGone(socket string) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("unix", socket, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
}

// DaemonService returns the function a command's options hold to reach
// the daemon, starting it when none runs; tests hand in a fake instead.
func (f *Factory) DaemonService() func(ctx context.Context) (daemon.Service, func(), error) {
	return func(ctx context.Context) (daemon.Service, func(), error) { return f.Daemon(ctx, true) }
}

// Namespace returns the function a command's options hold to learn the
// namespace (-n, else the kube context's).
func (f *Factory) Namespace() func() (string, error) {
	return func() (string, error) {
		t, err := f.Target()
		return t.Namespace, err
	}
}

// RunningDaemon is DaemonService for commands that must not start a
// daemon (leave, quit, status): with none running it returns ErrNoDaemon.
func (f *Factory) RunningDaemon() func(ctx context.Context) (daemon.Service, func(), error) {
	return func(ctx context.Context) (daemon.Service, func(), error) { return f.Daemon(ctx, false) }
}
