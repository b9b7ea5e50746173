// Package agent is tether's in-pod side: it serves the Agent control API on
// the pod's loopback interface, where only the daemon's tunnel reaches it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
)

// Config holds what the agent needs to run.
type Config struct {
	// ListenAddr is where the control API listens. It must be a loopback
	// address: the agent is reached only through the port-forward tunnel.
	ListenAddr string
	// PodName and PodNamespace name the pod the agent runs in (downward API).
	PodName      string
	PodNamespace string
	// Logger receives the agent's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultListenAddr is the control API's address inside the pod.
const DefaultListenAddr = "127.0.0.1:7341"

// DefaultConfig returns a Config listening on DefaultListenAddr.
func DefaultConfig() Config {
	return Config{ListenAddr: DefaultListenAddr}
}

// Validate checks the Config without doing any I/O.
func (c Config) Validate() error {
	host, port, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.ListenAddr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("listen address %q is not a loopback address: the agent serves only through the tunnel", c.ListenAddr)
	}
	if port == "" {
		return fmt.Errorf("listen address %q has no port", c.ListenAddr)
	}
	return nil
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
}

// New returns an Agent for cfg, or an error when cfg is invalid.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Agent{cfg: cfg, log: log, started: time.Now()}, nil
}

// Serve listens on the configured address and serves the control API until
// ctx is done.
func (a *Agent) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.ListenAddr, err)
	}
	return a.ServeListener(ctx, lis)
}

// ServeListener serves the control API on lis until ctx is done; it closes lis.
func (a *Agent) ServeListener(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer()
	agentv1.RegisterAgentServer(srv, NewGRPCServer(a))
	a.log.Info("agent serving", "addr", lis.Addr().String(), "pod", a.cfg.PodNamespace+"/"+a.cfg.PodName)

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve control API: %w", err)
	}
	return nil
}
