package agent

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/tunnel"
)

// Info describes a running agent.
type Info struct {
	Version      string
	Commit       string
	PodName      string
	PodNamespace string
	StartedAt    time.Time
	Forwards     []ForwardStatus
}

// ForwardStatus is a Forward and whether it is intercepted now.
type ForwardStatus struct {
	Forward
	Intercepted bool
}

// Errors of the Service; test with errors.Is.
var (
	ErrUnknownPort        = errdefs.New(errdefs.ErrNotFound, "UNKNOWN_PORT", "the agent does not forward that port")
	ErrAlreadyIntercepted = errdefs.New(errdefs.ErrAlreadyExists, "ALREADY_INTERCEPTED", "another tunnel already intercepts that port")
)

// Service is the agent's control API, as seen from one tunnel. The agent
// implements it per tunnel, and Client implements it over gRPC.
type Service interface {
	Info(ctx context.Context) (Info, error)
	// Intercept sends the port's new connections into the caller's tunnel.
	Intercept(ctx context.Context, listenPort int) error
	// Leave sends the port's new connections to the app again.
	Leave(ctx context.Context, listenPort int) error
	// Capture streams the packets of one of the pod's interfaces to emit.
	Capture(ctx context.Context, req CaptureRequest, emit func(CapturedPacket) error) (CaptureStats, error)
	// ResolvConf returns the pod's /etc/resolv.conf.
	ResolvConf(ctx context.Context) ([]byte, error)
	// QueryDNS sends one DNS query from the pod's network namespace.
	QueryDNS(ctx context.Context, q DNSQuery) (DNSAnswer, error)
	// Probe opens a TCP connection from the pod's network namespace, and
	// sends an HTTP request over it when asked.
	Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error)
	// Exchanges calls emit with each recorded exchange that matches, oldest
	// first, and returns the recorder's statistics.
	Exchanges(ctx context.Context, req ExchangesRequest, emit func(*recording.Exchange) error) (RecordingStats, error)
}

// sessionService is the Service for calls that came through sess.
type sessionService struct {
	agent *Agent
	sess  *tunnel.Session
}

var _ Service = (*sessionService)(nil)

func (s *sessionService) Info(context.Context) (Info, error) {
	return s.agent.info(), nil
}

func (s *sessionService) Intercept(_ context.Context, port int) error {
	a := s.agent
	if _, ok := a.forward(port); !ok {
		return fmt.Errorf("port %d: %w", port, ErrUnknownPort)
	}
	if cur := a.interceptor(port); cur != nil && cur != s.sess {
		return fmt.Errorf("port %d: %w", port, ErrAlreadyIntercepted)
	}
	a.mu.Lock()
	a.intercepts[port] = s.sess
	a.mu.Unlock()
	a.log.Info("intercept", "port", port)
	return nil
}

func (s *sessionService) Leave(_ context.Context, port int) error {
	a := s.agent
	if _, ok := a.forward(port); !ok {
		return fmt.Errorf("port %d: %w", port, ErrUnknownPort)
	}
	a.mu.Lock()
	if a.intercepts[port] == s.sess {
		delete(a.intercepts, port)
	}
	a.mu.Unlock()
	a.log.Info("leave", "port", port)
	return nil
}

// info reports the agent's build, pod and forwards.
func (a *Agent) info() Info {
	b := buildinfo.Get()
	info := Info{
		Version:      b.Version,
		Commit:       b.Commit,
		PodName:      a.cfg.PodName,
		PodNamespace: a.cfg.PodNamespace,
		StartedAt:    a.started,
	}
	for _, f := range a.cfg.Forwards {
		info.Forwards = append(info.Forwards, ForwardStatus{Forward: f, Intercepted: a.interceptor(f.ListenPort) != nil})
	}
	sort.Slice(info.Forwards, func(i, j int) bool { return info.Forwards[i].ListenPort < info.Forwards[j].ListenPort })
	return info
}
