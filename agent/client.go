package agent

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/internal/errdefs"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/recording"
)

// Client reaches an agent's control API over a gRPC connection (in
// production, one carried by a tunnel's control streams: see Connect).
type Client struct {
	rpc agentv1.AgentClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Client using conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: agentv1.NewAgentClient(conn)}
}

// knownErrors are the sentinels a client recognises after the wire.
var knownErrors = []error{ErrUnknownPort, ErrAlreadyIntercepted, ErrBadRouteFilter, ErrBadFilter, ErrNoCapNetRaw, ErrNotRecording, ErrBadProbe, ErrBadToken, ErrFixedToken, ErrNotServed, ErrNoProcess,
	ErrNoDirectPath, ErrBadDialBack, ErrProfiling, ErrNotProfiling, ErrAside, ErrBusy}

// fromStatus maps a gRPC error back to the Service's errors, prefixed by op.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, errdefs.FromGRPC(err, knownErrors...))
}

// Info asks the agent what it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &agentv1.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus("agent info", err)
	}
	return InfoFromProto(resp), nil
}

// Intercept asks the agent to send the port's connections, or the
// requests the spec's filter selects, into this tunnel.
func (c *Client) Intercept(ctx context.Context, spec InterceptSpec) error {
	_, err := c.rpc.Intercept(ctx, InterceptSpecToProto(spec))
	return fromStatus(fmt.Sprintf("intercept port %d", spec.ListenPort), err)
}

// Leave asks the agent to send the traffic of this tunnel's intercept id
// of the port (every one of this tunnel's when id is "") to the app again.
func (c *Client) Leave(ctx context.Context, listenPort int, id string) error {
	_, err := c.rpc.Leave(ctx, &agentv1.LeaveRequest{ListenPort: uint32(listenPort), Id: id})
	return fromStatus(fmt.Sprintf("leave port %d", listenPort), err)
}

// Capture streams the agent's captured packets to emit, a batch per
// message the agent sends.
func (c *Client) Capture(ctx context.Context, req CaptureRequest, emit func([]CapturedPacket) error) (CaptureStats, error) {
	stream, err := c.rpc.Capture(ctx, CaptureRequestToProto(req))
	if err != nil {
		return CaptureStats{}, fromStatus("capture", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return CaptureStats{}, fromStatus("capture", err)
		}
		switch e := ev.GetEvent().(type) {
		case *agentv1.CaptureEvent_Packets:
			if err := emit(PacketsFromProto(e.Packets)); err != nil {
				return CaptureStats{}, err
			}
		case *agentv1.CaptureEvent_Stats:
			return CaptureStatsFromProto(e.Stats), nil
		}
	}
}

// ResolvConf asks for the pod's resolv.conf.
func (c *Client) ResolvConf(ctx context.Context) ([]byte, error) {
	resp, err := c.rpc.ResolvConf(ctx, &agentv1.ResolvConfRequest{})
	if err != nil {
		return nil, fromStatus("read resolv.conf", err)
	}
	return resp.GetContent(), nil
}

// QueryDNS asks the agent to send a DNS query from the pod.
func (c *Client) QueryDNS(ctx context.Context, q DNSQuery) (DNSAnswer, error) {
	resp, err := c.rpc.QueryDNS(ctx, DNSQueryToProto(q))
	if err != nil {
		return DNSAnswer{}, fromStatus("query "+q.Name, err)
	}
	return DNSAnswerFromProto(resp), nil
}

// Probe asks the agent to connect somewhere from the pod.
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	resp, err := c.rpc.Probe(ctx, ProbeRequestToProto(req))
	if err != nil {
		return ProbeResult{}, fromStatus("probe "+req.Address, err)
	}
	return ProbeResultFromProto(resp), nil
}

// Exchanges streams the agent's recorded exchanges to emit, a batch per
// message the agent sends.
func (c *Client) Exchanges(ctx context.Context, req ExchangesRequest, emit func([]*recording.Exchange) error) (RecordingStats, error) {
	stream, err := c.rpc.Exchanges(ctx, ExchangesRequestToProto(req))
	if err != nil {
		return RecordingStats{}, fromStatus("recorded exchanges", err)
	}
	for {
		chunk, err := stream.Recv()
		if err != nil {
			return RecordingStats{}, fromStatus("recorded exchanges", err)
		}
		if exs := chunk.GetExchanges(); len(exs) > 0 {
			if err := emit(ExchangesFromProto(exs)); err != nil {
				return RecordingStats{}, err
			}
		}
		if st := chunk.GetStats(); st != nil {
			return StatsFromProto(st), nil
		}
	}
}

// Rotate gives the agent the token it accepts for new tunnels from now on.
func (c *Client) Rotate(ctx context.Context, token []byte) error {
	_, err := c.rpc.Rotate(ctx, &agentv1.RotateRequest{Token: token})
	return fromStatus("rotate the agent's token", err)
}

// ReadProcess reads a container's main process's environment and files.
func (c *Client) ReadProcess(ctx context.Context, req ProcessRequest) (ProcessData, error) {
	resp, err := c.rpc.ReadProcess(ctx, ProcessRequestToProto(req))
	if err != nil {
		return ProcessData{}, fromStatus("read the container's process", err)
	}
	return ProcessDataFromProto(resp), nil
}

// DialBack asks the agent to open the direct path to the daemon.
func (c *Client) DialBack(ctx context.Context, req DialBackRequest) error {
	_, err := c.rpc.DialBack(ctx, DialBackRequestToProto(req))
	return fromStatus("open the direct path", err)
}

// StartProfile starts profiling the agent.
func (c *Client) StartProfile(ctx context.Context, req ProfileRequest) error {
	_, err := c.rpc.StartProfile(ctx, ProfileRequestToProto(req))
	return fromStatus("start the agent's profile", err)
}

// StopProfile stops the profile this tunnel started and returns it.
func (c *Client) StopProfile(ctx context.Context) (Profiles, error) {
	resp, err := c.rpc.StopProfile(ctx, &agentv1.StopProfileRequest{})
	if err != nil {
		return Profiles{}, fromStatus("stop the agent's profile", err)
	}
	return ProfilesFromProto(resp), nil
}

// ExpectProbe asks the agent to answer readiness probes carrying nonce.
func (c *Client) ExpectProbe(ctx context.Context, nonce []byte, ttl time.Duration, forget bool) error {
	_, err := c.rpc.ExpectProbe(ctx, &agentv1.ExpectProbeRequest{Nonce: nonce, TtlMillis: ttl.Milliseconds(), Forget: forget})
	return fromStatus("expect readiness probes", err)
}

// StepAside asks the agent to step aside (back: to take intercepts again).
func (c *Client) StepAside(ctx context.Context, back bool) error {
	_, err := c.rpc.StepAside(ctx, &agentv1.StepAsideRequest{Back: back})
	if back {
		return fromStatus("agent back in front of the app", err)
	}
	return fromStatus("agent stepping aside", err)
}

// ProbeService asks the agent to check that a Service reaches the agents.
func (c *Client) ProbeService(ctx context.Context, req ServiceProbeRequest) (ServiceProbeResult, error) {
	resp, err := c.rpc.ProbeService(ctx, ServiceProbeRequestToProto(req))
	if err != nil {
		return ServiceProbeResult{}, fromStatus("probe service "+req.Address, err)
	}
	return ServiceProbeResultFromProto(resp), nil
}
