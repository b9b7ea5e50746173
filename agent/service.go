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

	"github.com/tetherkube/tether/httpfilter"
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
	// IdleSince is since when nothing has intercepted the agent's ports
	// (its start, if nothing ever did); zero while something does.
	IdleSince time.Time
	// RecordIdle is how long the agent records while idle (0: always),
	// and after which it may step aside (StepAside), whether it records or
	// not;
	// RecordingPaused says that time is up: it forwards without recording
	// until the next intercept.
	RecordIdle      time.Duration
	RecordingPaused bool
	// Aside: the agent stepped aside (StepAside); the Service is being, or
	// has been, pointed back at the app, and it refuses intercepts.
	Aside bool
	// Passive: the agent also records from a copy of the pod's packets
	// (--record-passive), with what that counted; nil otherwise.
	Passive *PassiveStats
}

// PassiveStats counts an agent's recording from packets: the connections
// recorded, those not recorded because they opened before the agent
// started (MidStream) or lost bytes (Gaps: the kernel dropped packets,
// DroppedPackets, or more were open than it follows).
type PassiveStats struct {
	Conns, MidStream, Gaps, DroppedPackets uint64
}

// Forward is one port the agent sits in front of.
type Forward struct {
	// ListenPort is where the agent accepts the Service's traffic.
	ListenPort int
	// AppPort is the app container's port on the pod's loopback interface.
	AppPort int
}

// ForwardStatus is a Forward and who intercepts it now.
type ForwardStatus struct {
	Forward
	// Intercepted: some of its traffic goes into a tunnel now (an
	// intercept that is not a mirror).
	Intercepted bool
	// Intercepts are all of the port's intercepts, whoever's.
	Intercepts []InterceptStatus
	// While filtered or mirror intercepts route the port request by
	// request: the requests no filter selected (the app answered), and
	// the connections that were not cleartext HTTP (of them TLS), which
	// went to the app unfiltered.
	ToApp, NotHTTP, TLS uint64
}

// InterceptSpec is one intercept of a port. Its traffic goes into the
// caller's tunnel: all of it when Filter is zero, else each request
// Filter selects (per request on HTTP/1.1 keep-alive connections, per
// stream on HTTP/2 cleartext), the rest to the app. With Mirror the app
// answers every request and the tunnel gets a copy of each selected one.
type InterceptSpec struct {
	ListenPort int
	// ID is the daemon's name for the intercept, unique for its owner.
	ID string
	// Owner says who intercepts ("ana@laptop"), shown to others.
	Owner  string
	Filter httpfilter.Spec
	Mirror bool
}

// InterceptStatus is an intercept and what it got.
type InterceptStatus struct {
	InterceptSpec
	Since time.Time
	// Requests counts those routed to it (copies delivered, for a mirror),
	// while the port is routed request by request.
	Requests uint64
	// Dropped counts a mirror's copies not delivered: its queue full, a
	// body over the cap, the laptop not answering in time, or the agent
	// near its CPU limit (those also in Shed).
	Dropped uint64
	Shed    uint64
}

// DefaultTunnelPort is the agent's tunnel port inside the pod.
const DefaultTunnelPort = 7341

// Errors of the Service; test with errors.Is.
var (
	ErrUnknownPort        = errdefs.New(errdefs.ErrNotFound, "UNKNOWN_PORT", "the agent does not forward that port")
	ErrAlreadyIntercepted = errdefs.New(errdefs.ErrAlreadyExists, "ALREADY_INTERCEPTED", "another intercept of that port overlaps this one")
	ErrBadRouteFilter     = errdefs.New(errdefs.ErrUser, "BAD_ROUTE_FILTER", "the intercept's filter is not valid")
	// ErrAside: the agent stepped aside (StepAside) and takes no intercept
	// until StepAside with back.
	ErrAside = errdefs.New(errdefs.ErrFailedCheck, "ASIDE", "the agent stepped aside: the Service is being pointed back at the app")
	// ErrBusy: StepAside refused, something intercepts the agent or has
	// within its --record-idle.
	ErrBusy = errdefs.New(errdefs.ErrFailedCheck, "BUSY", "the agent is in use or was within its idle time")
)

// Service is the agent's control API, as seen from one tunnel. The agent
// (agent/server) implements it per tunnel, and Client implements it over
// gRPC.
type Service interface {
	Info(ctx context.Context) (Info, error)
	// Intercept sends the port's new connections, or the requests its
	// filter selects, into the caller's tunnel; it refuses a spec that
	// overlaps another tunnel's intercept (ErrAlreadyIntercepted, naming
	// its owner). The caller's own intercept with the same ID is replaced.
	Intercept(ctx context.Context, spec InterceptSpec) error
	// Leave ends the caller's intercept id of the port (every one of the
	// caller's on the port when id is ""): its traffic goes to the app
	// again.
	Leave(ctx context.Context, listenPort int, id string) error
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
	// StartProfile starts CPU, block and mutex profiles of the agent, until
	// StopProfile through the same tunnel or that tunnel's end; one at a
	// time (ErrProfiling).
	StartProfile(ctx context.Context, req ProfileRequest) error
	// StopProfile stops the profile this tunnel started and returns it
	// (ErrNotProfiling when there is none).
	StopProfile(ctx context.Context) (Profiles, error)
	// ExpectProbe makes the agent answer readiness probes carrying nonce
	// (ProbeNonceSize bytes) for ttl instead of forwarding them; forget
	// stops that at once.
	ExpectProbe(ctx context.Context, nonce []byte, ttl time.Duration, forget bool) error
	// ProbeService checks from the pod that a Service sends its
	// connections to the expected pods' agents.
	ProbeService(ctx context.Context, req ServiceProbeRequest) (ServiceProbeResult, error)
	// StepAside readies the agent for the Service to be pointed back at
	// the app, when nothing has intercepted it for its idle time (ErrBusy
	// otherwise), and makes it refuse intercepts (ErrAside); back undoes
	// that, before the Service is pointed at the agent again.
	StepAside(ctx context.Context, back bool) error
}

// Errors of Rotate.
var (
	ErrBadToken   = errdefs.New(errdefs.ErrUser, "BAD_TOKEN", "a token must be 16 to 255 bytes")
	ErrFixedToken = errdefs.New(errdefs.ErrUser, "FIXED_TOKEN", "this agent's token comes from its Secret and cannot be rotated")
)
