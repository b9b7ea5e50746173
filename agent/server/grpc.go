package server

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/recording"
)

// grpcServer adapts an agent.Service to the generated Agent server: field
// mapping and error codes only.
type grpcServer struct {
	agentv1.UnimplementedAgentServer
	svc agent.Service
}

// NewGRPCServer returns the gRPC adapter for svc.
func NewGRPCServer(svc agent.Service) agentv1.AgentServer {
	return &grpcServer{svc: svc}
}

// toStatus maps the Service's errors to gRPC codes by their class.
func toStatus(err error) error { return errdefs.ToGRPC(err) }

func (s *grpcServer) Info(ctx context.Context, _ *agentv1.InfoRequest) (*agentv1.InfoResponse, error) {
	info, err := s.svc.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.InfoToProto(info), nil
}

func (s *grpcServer) Intercept(ctx context.Context, req *agentv1.InterceptRequest) (*agentv1.InterceptResponse, error) {
	return &agentv1.InterceptResponse{}, toStatus(s.svc.Intercept(ctx, agent.InterceptSpecFromProto(req)))
}

func (s *grpcServer) Leave(ctx context.Context, req *agentv1.LeaveRequest) (*agentv1.LeaveResponse, error) {
	return &agentv1.LeaveResponse{}, toStatus(s.svc.Leave(ctx, int(req.GetListenPort()), req.GetId()))
}

func (s *grpcServer) Capture(req *agentv1.CaptureRequest, stream grpc.ServerStreamingServer[agentv1.CaptureEvent]) error {
	stats, err := s.svc.Capture(stream.Context(), agent.CaptureRequestFromProto(req), func(b []agent.CapturedPacket) error {
		return stream.Send(&agentv1.CaptureEvent{Event: &agentv1.CaptureEvent_Packets{Packets: agent.PacketsToProto(b)}})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&agentv1.CaptureEvent{Event: &agentv1.CaptureEvent_Stats{Stats: agent.CaptureStatsToProto(stats)}})
}

func (s *grpcServer) ResolvConf(ctx context.Context, _ *agentv1.ResolvConfRequest) (*agentv1.ResolvConfResponse, error) {
	b, err := s.svc.ResolvConf(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentv1.ResolvConfResponse{Content: b}, nil
}

func (s *grpcServer) QueryDNS(ctx context.Context, req *agentv1.DNSQueryRequest) (*agentv1.DNSQueryResponse, error) {
	a, err := s.svc.QueryDNS(ctx, agent.DNSQueryFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.DNSAnswerToProto(a), nil
}

func (s *grpcServer) Probe(ctx context.Context, req *agentv1.ProbeRequest) (*agentv1.ProbeResponse, error) {
	r, err := s.svc.Probe(ctx, agent.ProbeRequestFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.ProbeResultToProto(r), nil
}

func (s *grpcServer) Exchanges(req *agentv1.ExchangesRequest, stream grpc.ServerStreamingServer[agentv1.ExchangesChunk]) error {
	st, err := s.svc.Exchanges(stream.Context(), agent.ExchangesRequestFromProto(req), func(b []*recording.Exchange) error {
		return stream.Send(&agentv1.ExchangesChunk{Exchanges: agent.ExchangesToProto(b)})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&agentv1.ExchangesChunk{Stats: agent.StatsToProto(st)})
}

func (s *grpcServer) Rotate(ctx context.Context, req *agentv1.RotateRequest) (*agentv1.RotateResponse, error) {
	return &agentv1.RotateResponse{}, toStatus(s.svc.Rotate(ctx, req.GetToken()))
}

func (s *grpcServer) ReadProcess(ctx context.Context, req *agentv1.ReadProcessRequest) (*agentv1.ReadProcessResponse, error) {
	d, err := s.svc.ReadProcess(ctx, agent.ProcessRequestFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.ProcessDataToProto(d), nil
}

func (s *grpcServer) DialBack(ctx context.Context, req *agentv1.DialBackRequest) (*agentv1.DialBackResponse, error) {
	return &agentv1.DialBackResponse{}, toStatus(s.svc.DialBack(ctx, agent.DialBackRequestFromProto(req)))
}

func (s *grpcServer) StartProfile(ctx context.Context, req *agentv1.StartProfileRequest) (*agentv1.StartProfileResponse, error) {
	return &agentv1.StartProfileResponse{}, toStatus(s.svc.StartProfile(ctx, agent.ProfileRequestFromProto(req)))
}

func (s *grpcServer) StopProfile(ctx context.Context, _ *agentv1.StopProfileRequest) (*agentv1.StopProfileResponse, error) {
	p, err := s.svc.StopProfile(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.ProfilesToProto(p), nil
}

func (s *grpcServer) ExpectProbe(ctx context.Context, req *agentv1.ExpectProbeRequest) (*agentv1.ExpectProbeResponse, error) {
	err := s.svc.ExpectProbe(ctx, req.GetNonce(), time.Duration(req.GetTtlMillis())*time.Millisecond, req.GetForget())
	return &agentv1.ExpectProbeResponse{}, toStatus(err)
}

func (s *grpcServer) StepAside(ctx context.Context, req *agentv1.StepAsideRequest) (*agentv1.StepAsideResponse, error) {
	return &agentv1.StepAsideResponse{}, toStatus(s.svc.StepAside(ctx, req.GetBack()))
}

func (s *grpcServer) ProbeService(ctx context.Context, req *agentv1.ProbeServiceRequest) (*agentv1.ProbeServiceResponse, error) {
	r, err := s.svc.ProbeService(ctx, agent.ServiceProbeRequestFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return agent.ServiceProbeResultToProto(r), nil
}
