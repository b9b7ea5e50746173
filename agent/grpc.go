package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/internal/batchq"
	"github.com/tetherkube/tether/internal/errdefs"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/recording"
)

// grpcServer adapts a Service to the generated Agent server interface.
type grpcServer struct {
	agentv1.UnimplementedAgentServer
	svc Service
}

// NewGRPCServer returns the gRPC adapter for svc.
func NewGRPCServer(svc Service) agentv1.AgentServer {
	return &grpcServer{svc: svc}
}

// toStatus maps the Service's errors to gRPC codes by their class.
func toStatus(err error) error { return errdefs.ToGRPC(err) }

// knownErrors are the sentinels a client recognises after the wire.
var knownErrors = []error{ErrUnknownPort, ErrAlreadyIntercepted, ErrBadFilter, ErrNoCapNetRaw, ErrNotRecording, ErrBadProbe}

// fromStatus maps a gRPC error back to the Service's errors, prefixed by op.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, errdefs.FromGRPC(err, knownErrors...))
}

func (s *grpcServer) Info(ctx context.Context, _ *agentv1.InfoRequest) (*agentv1.InfoResponse, error) {
	info, err := s.svc.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.InfoResponse{
		Version:         info.Version,
		Commit:          info.Commit,
		PodName:         info.PodName,
		PodNamespace:    info.PodNamespace,
		StartedUnixNano: info.StartedAt.UnixNano(),
	}
	for _, f := range info.Forwards {
		resp.Forwards = append(resp.Forwards, &agentv1.Forward{
			ListenPort: uint32(f.ListenPort), AppPort: uint32(f.AppPort), Intercepted: f.Intercepted,
		})
	}
	return resp, nil
}

func (s *grpcServer) Intercept(ctx context.Context, req *agentv1.InterceptRequest) (*agentv1.InterceptResponse, error) {
	return &agentv1.InterceptResponse{}, toStatus(s.svc.Intercept(ctx, int(req.GetListenPort())))
}

func (s *grpcServer) Leave(ctx context.Context, req *agentv1.LeaveRequest) (*agentv1.LeaveResponse, error) {
	return &agentv1.LeaveResponse{}, toStatus(s.svc.Leave(ctx, int(req.GetListenPort())))
}

// Capture batches: the capture loop puts packets into a queue and another
// goroutine sends whatever has accumulated as one message, so a slow
// tunnel costs buffering (then kernel drops, counted), not a message per
// packet.
func (s *grpcServer) Capture(req *agentv1.CaptureRequest, stream grpc.ServerStreamingServer[agentv1.CaptureEvent]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	q := batchq.New[*agentv1.Packet](CaptureQueueBytes)
	sent := make(chan error, 1)
	go func() {
		sent <- q.Drain(CaptureBatchPackets, CaptureBatchBytes, func(b []*agentv1.Packet) error {
			return stream.Send(&agentv1.CaptureEvent{Event: &agentv1.CaptureEvent_Packets{Packets: &agentv1.PacketBatch{Packets: b}}})
		})
	}()
	stats, err := s.svc.Capture(ctx, CaptureRequest{
		Interface: req.GetInterface(), Filter: req.GetFilter(), Snaplen: int(req.GetSnaplen()),
		Count: req.GetCount(), Duration: time.Duration(req.GetDurationMillis()) * time.Millisecond,
	}, func(p CapturedPacket) error {
		return q.Put(ctx, &agentv1.Packet{TimestampUnixNano: p.Timestamp.UnixNano(), Length: uint32(p.Length), Data: p.Data}, len(p.Data)+packetOverhead)
	})
	q.Close()
	if serr := <-sent; serr != nil {
		return serr
	}
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&agentv1.CaptureEvent{Event: &agentv1.CaptureEvent_Stats{Stats: &agentv1.CaptureStats{
		Received: stats.Received, Dropped: stats.Dropped,
	}}})
}

// Capture batching: a message holds at most CaptureBatchPackets packets and
// CaptureBatchBytes bytes (one packet always fits); CaptureQueueBytes are
// buffered while the tunnel is slower than the capture.
const (
	CaptureBatchPackets = 1024
	CaptureBatchBytes   = 1 << 20
	CaptureQueueBytes   = 16 << 20
	packetOverhead      = 32 // a packet's bookkeeping, beyond its bytes
)

// Client reaches an agent's control API over a gRPC connection (in
// production, one carried by a tunnel's control streams).
type Client struct {
	rpc agentv1.AgentClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Client using conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: agentv1.NewAgentClient(conn)}
}

// Info asks the agent what it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &agentv1.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus("agent info", err)
	}
	info := Info{
		Version:      resp.GetVersion(),
		Commit:       resp.GetCommit(),
		PodName:      resp.GetPodName(),
		PodNamespace: resp.GetPodNamespace(),
		StartedAt:    time.Unix(0, resp.GetStartedUnixNano()),
	}
	for _, f := range resp.GetForwards() {
		info.Forwards = append(info.Forwards, ForwardStatus{
			Forward:     Forward{ListenPort: int(f.GetListenPort()), AppPort: int(f.GetAppPort())},
			Intercepted: f.GetIntercepted(),
		})
	}
	return info, nil
}

// Intercept asks the agent to send the port's connections into this tunnel.
func (c *Client) Intercept(ctx context.Context, listenPort int) error {
	_, err := c.rpc.Intercept(ctx, &agentv1.InterceptRequest{ListenPort: uint32(listenPort)})
	return fromStatus(fmt.Sprintf("intercept port %d", listenPort), err)
}

// Leave asks the agent to send the port's connections to the app again.
func (c *Client) Leave(ctx context.Context, listenPort int) error {
	_, err := c.rpc.Leave(ctx, &agentv1.LeaveRequest{ListenPort: uint32(listenPort)})
	return fromStatus(fmt.Sprintf("leave port %d", listenPort), err)
}

// Capture streams the agent's captured packets to emit.
func (c *Client) Capture(ctx context.Context, req CaptureRequest, emit func(CapturedPacket) error) (CaptureStats, error) {
	stream, err := c.rpc.Capture(ctx, &agentv1.CaptureRequest{
		Interface: req.Interface, Filter: req.Filter, Snaplen: uint32(req.Snaplen),
		Count: req.Count, DurationMillis: req.Duration.Milliseconds(),
	})
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
			for _, p := range e.Packets.GetPackets() {
				if err := emit(CapturedPacket{Timestamp: time.Unix(0, p.GetTimestampUnixNano()), Length: int(p.GetLength()), Data: p.GetData()}); err != nil {
					return CaptureStats{}, err
				}
			}
		case *agentv1.CaptureEvent_Stats:
			return CaptureStats{Received: e.Stats.GetReceived(), Dropped: e.Stats.GetDropped()}, nil
		}
	}
}

func (s *grpcServer) ResolvConf(ctx context.Context, _ *agentv1.ResolvConfRequest) (*agentv1.ResolvConfResponse, error) {
	b, err := s.svc.ResolvConf(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.ResolvConfResponse{Content: b}, nil
}

func (s *grpcServer) QueryDNS(ctx context.Context, req *agentv1.DNSQueryRequest) (*agentv1.DNSQueryResponse, error) {
	a, err := s.svc.QueryDNS(ctx, DNSQuery{Server: req.GetServer(), Name: req.GetName(), Type: req.GetType(),
		Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.DNSQueryResponse{Rcode: a.Rcode, LatencyNanos: int64(a.Latency), Error: a.Error, Tcp: a.TCP}
	for _, r := range a.Answers {
		resp.Answers = append(resp.Answers, &agentv1.DNSRecord{Name: r.Name, Type: r.Type, Ttl: r.TTL, Data: r.Data})
	}
	return resp, nil
}

func (s *grpcServer) Probe(ctx context.Context, req *agentv1.ProbeRequest) (*agentv1.ProbeResponse, error) {
	pr := ProbeRequest{Address: req.GetAddress(), Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond}
	if h := req.GetHttp(); h != nil {
		pr.HTTP = &HTTPProbe{Method: h.GetMethod(), Path: h.GetPath(), Host: h.GetHost()}
	}
	r, err := s.svc.Probe(ctx, pr)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.ProbeResponse{Connected: r.Connected, ConnectNanos: int64(r.Connect), Error: r.Error,
		LocalAddress: r.LocalAddress, HttpStatus: int32(r.HTTPStatus), HttpNanos: int64(r.HTTPLatency), HttpError: r.HTTPError}, nil
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
	resp, err := c.rpc.QueryDNS(ctx, &agentv1.DNSQueryRequest{Server: q.Server, Name: q.Name, Type: q.Type,
		TimeoutMillis: q.Timeout.Milliseconds()})
	if err != nil {
		return DNSAnswer{}, fromStatus("query "+q.Name, err)
	}
	a := DNSAnswer{Rcode: resp.GetRcode(), Latency: time.Duration(resp.GetLatencyNanos()), Error: resp.GetError(), TCP: resp.GetTcp()}
	for _, r := range resp.GetAnswers() {
		a.Answers = append(a.Answers, DNSRecord{Name: r.GetName(), Type: r.GetType(), TTL: r.GetTtl(), Data: r.GetData()})
	}
	return a, nil
}

// Probe asks the agent to connect somewhere from the pod.
func (c *Client) Probe(ctx context.Context, req ProbeRequest) (ProbeResult, error) {
	pr := &agentv1.ProbeRequest{Address: req.Address, TimeoutMillis: req.Timeout.Milliseconds()}
	if h := req.HTTP; h != nil {
		pr.Http = &agentv1.HTTPProbe{Method: h.Method, Path: h.Path, Host: h.Host}
	}
	resp, err := c.rpc.Probe(ctx, pr)
	if err != nil {
		return ProbeResult{}, fromStatus("probe "+req.Address, err)
	}
	return ProbeResult{Connected: resp.GetConnected(), Connect: time.Duration(resp.GetConnectNanos()), Error: resp.GetError(),
		LocalAddress: resp.GetLocalAddress(), HTTPStatus: int(resp.GetHttpStatus()), HTTPLatency: time.Duration(resp.GetHttpNanos()),
		HTTPError: resp.GetHttpError()}, nil
}

func (s *grpcServer) Exchanges(req *agentv1.ExchangesRequest, stream grpc.ServerStreamingServer[agentv1.ExchangesChunk]) error {
	er := ExchangesRequest{WithoutBodies: req.GetWithoutBodies(), Limit: int(req.GetLimit()), Filter: FilterFromProto(req.GetFilter())}
	var buf []byte
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := stream.Send(&agentv1.ExchangesChunk{ExchangesJsonl: buf})
		buf = nil
		return err
	}
	st, err := s.svc.Exchanges(stream.Context(), er, func(e *recording.Exchange) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
		if len(buf) >= exchangeChunkBytes {
			return flush()
		}
		return nil
	})
	if err != nil {
		return toStatus(err)
	}
	if err := flush(); err != nil {
		return err
	}
	return stream.Send(&agentv1.ExchangesChunk{Stats: StatsToProto(st)})
}

// FilterToProto and FilterFromProto carry a recording.Filter on the wire.
func FilterToProto(f recording.Filter) *agentv1.ExchangeFilter {
	p := &agentv1.ExchangeFilter{Status: f.Status, Method: f.Method, PathPrefix: f.PathPrefix, Ids: f.IDs}
	if !f.Since.IsZero() {
		p.SinceUnixNano = f.Since.UnixNano()
	}
	return p
}

func FilterFromProto(p *agentv1.ExchangeFilter) recording.Filter {
	f := recording.Filter{Status: p.GetStatus(), Method: p.GetMethod(), PathPrefix: p.GetPathPrefix(), IDs: p.GetIds()}
	if n := p.GetSinceUnixNano(); n != 0 {
		f.Since = time.Unix(0, n)
	}
	return f
}

// StatsToProto and StatsFromProto carry RecordingStats on the wire.
func StatsToProto(st RecordingStats) *agentv1.RecordingStats {
	return &agentv1.RecordingStats{
		Connections: st.Connections, Exchanges: st.Exchanges, Evicted: st.Evicted, NotHttp: st.NotHTTP, Malformed: st.Malformed,
		Upgraded: st.Upgraded, StoredBytes: st.StoredBytes, InflightBytes: st.InflightBytes, BudgetBytes: st.BudgetBytes,
		Held: st.Held, BodyCap: st.BodyCap, RedactionOff: st.RedactionOff, RedactedNames: st.RedactedNames,
	}
}

func StatsFromProto(st *agentv1.RecordingStats) RecordingStats {
	return RecordingStats{Connections: st.GetConnections(), Exchanges: st.GetExchanges(), Evicted: st.GetEvicted(),
		NotHTTP: st.GetNotHttp(), Malformed: st.GetMalformed(), Upgraded: st.GetUpgraded(), StoredBytes: st.GetStoredBytes(),
		InflightBytes: st.GetInflightBytes(), BudgetBytes: st.GetBudgetBytes(), Held: st.GetHeld(), BodyCap: st.GetBodyCap(),
		RedactionOff: st.GetRedactionOff(), RedactedNames: st.GetRedactedNames()}
}

// DecodeExchanges reads exchanges as JSON lines, calling emit for each.
func DecodeExchanges(jsonl []byte, emit func(*recording.Exchange) error) error {
	dec := json.NewDecoder(bytes.NewReader(jsonl))
	for dec.More() {
		var e recording.Exchange
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("read recorded exchanges: %w", err)
		}
		if err := emit(&e); err != nil {
			return err
		}
	}
	return nil
}

// exchangeChunkBytes is the size from which a chunk of exchanges is sent.
const exchangeChunkBytes = 512 << 10

// Exchanges streams the agent's recorded exchanges to emit.
func (c *Client) Exchanges(ctx context.Context, req ExchangesRequest, emit func(*recording.Exchange) error) (RecordingStats, error) {
	stream, err := c.rpc.Exchanges(ctx, &agentv1.ExchangesRequest{Filter: FilterToProto(req.Filter), WithoutBodies: req.WithoutBodies, Limit: uint32(req.Limit)})
	if err != nil {
		return RecordingStats{}, fromStatus("recorded exchanges", err)
	}
	for {
		chunk, err := stream.Recv()
		if err != nil {
			return RecordingStats{}, fromStatus("recorded exchanges", err)
		}
		if err := DecodeExchanges(chunk.GetExchangesJsonl(), emit); err != nil {
			return RecordingStats{}, err
		}
		if st := chunk.GetStats(); st != nil {
			return StatsFromProto(st), nil
		}
	}
}
