// Package agent is the API of tether's in-pod agent: the Service interface
// and its types and errors, the gRPC client that implements Service over a
// tunnel's control streams, the conversions to and from the wire
// (proto/agent/v1), and Connect, the one way to open that tunnel over a
// byte stream. The agent itself, which serves this API inside the pod, is
// agent/server; importing this package does not link it.
package agent

import (
	"context"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
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

// Forward is one port the agent sits in front of.
type Forward struct {
	// ListenPort is where the agent accepts the Service's traffic.
	ListenPort int
	// AppPort is the app container's port on the pod's loopback interface.
	AppPort int
}

// ForwardStatus is a Forward and whether it is intercepted now.
type ForwardStatus struct {
	Forward
	Intercepted bool
}

// DefaultTunnelPort is the agent's tunnel port inside the pod.
const DefaultTunnelPort = 7341

// Errors of the Service; test with errors.Is.
var (
	ErrUnknownPort        = errdefs.New(errdefs.ErrNotFound, "UNKNOWN_PORT", "the agent does not forward that port")
	ErrAlreadyIntercepted = errdefs.New(errdefs.ErrAlreadyExists, "ALREADY_INTERCEPTED", "another tunnel already intercepts that port")
)

// Service is the agent's control API, as seen from one tunnel. The agent
// (agent/server) implements it per tunnel, and Client implements it over
// gRPC.
type Service interface {
	Info(ctx context.Context) (Info, error)
	// Intercept sends the port's new connections into the caller's tunnel.
	Intercept(ctx context.Context, listenPort int) error
	// Leave sends the port's new connections to the app again.
	Leave(ctx context.Context, listenPort int) error
	// Capture streams the packets of one of the pod's interfaces to emit,
	// in batches: under load many packets per call, when idle one.
	Capture(ctx context.Context, req CaptureRequest, emit func([]CapturedPacket) error) (CaptureStats, error)
	// ResolvConf returns the pod's /etc/resolv.conf.
	ResolvConf(ctx context.Context) ([]byte, error)
	// QueryDNS sends one DNS query from the pod's network namespace.
	QueryDNS(ctx context.Context, q DNSQuery) (DNSAnswer, error)
	// Probe opens a TCP connection from the pod's network namespace, and
	// sends an HTTP request over it when asked.
	Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error)
	// Exchanges calls emit with the recorded exchanges that match, oldest
	// first, in batches of bounded size, and returns the recorder's
	// statistics.
	Exchanges(ctx context.Context, req ExchangesRequest, emit func([]*recording.Exchange) error) (RecordingStats, error)
	// Rotate replaces the token the agent accepts for new tunnels (an
	// inspection agent's bootstrap token); open tunnels go on.
	Rotate(ctx context.Context, token []byte) error
	// ReadProcess reads a container's main process's environment and the
	// files under paths of its root (the run job).
	ReadProcess(ctx context.Context, req ProcessRequest) (ProcessData, error)
	// DialBack opens the direct path of the calling tunnel: the agent
	// connects to the daemon (tunnel/spec.md, section 4).
	DialBack(ctx context.Context, req DialBackRequest) error
}

// Errors of Rotate.
var (
	ErrBadToken   = errdefs.New(errdefs.ErrUser, "BAD_TOKEN", "a token must be 16 to 255 bytes")
	ErrFixedToken = errdefs.New(errdefs.ErrUser, "FIXED_TOKEN", "this agent's token comes from its Secret and cannot be rotated")
)
