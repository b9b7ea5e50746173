package server

import (
	"context"
	"os"
	"sync"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// GRPCServer adapts a daemon.Service to the generated Daemon server: field
// mapping (daemon's conversions) and error codes only.
type GRPCServer struct {
	daemonv1.UnimplementedDaemonServer
	svc daemon.Service
}

// NewGRPCServer returns the adapter for svc.
func NewGRPCServer(svc daemon.Service) *GRPCServer { return &GRPCServer{svc: svc} }

// toStatus maps the Service's errors to gRPC codes by their class.
func toStatus(err error) error { return errdefs.ToGRPC(err) }

func (s *GRPCServer) Status(ctx context.Context, _ *daemonv1.StatusRequest) (*daemonv1.StatusResponse, error) {
	st, err := s.svc.Status(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return daemon.StatusToProto(st), nil
}

// Identity is this process's build and pid: the adapter runs in the
// daemon, so it needs nothing of the Service.
func (s *GRPCServer) Identity(context.Context, *daemonv1.IdentityRequest) (*daemonv1.IdentityResponse, error) {
	return &daemonv1.IdentityResponse{DaemonVersion: buildinfo.Identity(), Pid: int32(os.Getpid())}, nil
}

func (s *GRPCServer) Intercept(req *daemonv1.InterceptRequest, stream grpc.ServerStreamingServer[daemonv1.InterceptEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.InterceptEvent{Event: &daemonv1.InterceptEvent_Progress{Progress: line}})
	}
	info, err := s.svc.Intercept(stream.Context(), daemon.InterceptRequestFromProto(req), progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.InterceptEvent{Event: &daemonv1.InterceptEvent_Ready{Ready: daemon.InterceptInfoToProto(info)}})
}

func (s *GRPCServer) Leave(ctx context.Context, req *daemonv1.LeaveRequest) (*daemonv1.LeaveResponse, error) {
	return &daemonv1.LeaveResponse{}, toStatus(s.svc.Leave(ctx, req.GetNamespace(), req.GetName()))
}

func (s *GRPCServer) Rollback(ctx context.Context, req *daemonv1.RollbackRequest) (*daemonv1.RollbackResponse, error) {
	results, err := s.svc.Rollback(ctx, daemon.RollbackRequestFromProto(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return daemon.RollbackResultsToProto(results), nil
}

func (s *GRPCServer) Quit(ctx context.Context, _ *daemonv1.QuitRequest) (*daemonv1.QuitResponse, error) {
	return &daemonv1.QuitResponse{}, toStatus(s.svc.Quit(ctx))
}

func (s *GRPCServer) Capture(req *daemonv1.CaptureRequest, stream grpc.ServerStreamingServer[daemonv1.CaptureEvent]) error {
	var mu sync.Mutex // progress and packets may come from two goroutines
	send := func(ev *daemonv1.CaptureEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(ev)
	}
	progress := func(line string) {
		_ = send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Progress{Progress: line}})
	}
	stats, err := s.svc.Capture(stream.Context(), daemon.CaptureRequestFromProto(req), progress, func(b []agent.CapturedPacket) error {
		return send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Packets{Packets: agent.PacketsToProto(b)}})
	})
	if err != nil {
		return toStatus(err)
	}
	return send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Stats{Stats: agent.CaptureStatsToProto(stats)}})
}

func (s *GRPCServer) Trace(req *daemonv1.TraceRequest, stream grpc.ServerStreamingServer[daemonv1.TraceEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.TraceEvent{Event: &daemonv1.TraceEvent_Progress{Progress: line}})
	}
	rep, err := s.svc.Trace(stream.Context(), daemon.TraceRequestFromProto(req), progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.TraceEvent{Event: &daemonv1.TraceEvent_Report{Report: daemon.TraceReportToProto(rep)}})
}

func (s *GRPCServer) Record(req *daemonv1.RecordRequest, stream grpc.ServerStreamingServer[daemonv1.RecordEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.RecordEvent{Event: &daemonv1.RecordEvent_Progress{Progress: line}})
	}
	info, err := s.svc.Record(stream.Context(), daemon.RecordRequestFromProto(req), progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.RecordEvent{Event: &daemonv1.RecordEvent_Info{Info: daemon.RecordInfoToProto(info)}})
}

// Requests sends one exchange per message; the last message holds no
// exchange and each pod's statistics.
func (s *GRPCServer) Requests(req *daemonv1.RequestsRequest, stream grpc.ServerStreamingServer[daemonv1.RequestsChunk]) error {
	pods, err := s.svc.Requests(stream.Context(), daemon.RequestsRequestFromProto(req), func(e *recording.Exchange) error {
		return stream.Send(&daemonv1.RequestsChunk{Exchanges: []*agentv1.Exchange{agent.ExchangeToProto(e)}})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.RequestsChunk{Last: true, Pods: daemon.PodRecordingsToProto(pods)})
}

func (s *GRPCServer) Replay(req *daemonv1.ReplayRequest, stream grpc.ServerStreamingServer[daemonv1.ReplayEvent]) error {
	rr, err := daemon.ReplayRequestFromProto(req)
	if err != nil {
		return toStatus(err)
	}
	sum, err := s.svc.Replay(stream.Context(), rr, func(r replay.Result) error {
		return stream.Send(&daemonv1.ReplayEvent{Event: &daemonv1.ReplayEvent_Result{Result: daemon.ReplayResultToProto(r)}})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.ReplayEvent{Event: &daemonv1.ReplayEvent_Summary{Summary: daemon.ReplaySummaryToProto(sum)}})
}

func (s *GRPCServer) Env(req *daemonv1.EnvRequest, stream grpc.ServerStreamingServer[daemonv1.EnvEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.EnvEvent{Event: &daemonv1.EnvEvent_Progress{Progress: line}})
	}
	res, err := s.svc.Env(stream.Context(), daemon.EnvRequestFromProto(req), progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.EnvEvent{Event: &daemonv1.EnvEvent_Result{Result: daemon.EnvResultToProto(res)}})
}

func (s *GRPCServer) Run(req *daemonv1.RunRequest, stream grpc.ServerStreamingServer[daemonv1.RunEvent]) error {
	var mu sync.Mutex
	send := func(ev *daemonv1.RunEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(ev)
	}
	err := s.svc.Run(stream.Context(), daemon.RunRequestFromProto(req),
		func(line string) { send(&daemonv1.RunEvent{Event: &daemonv1.RunEvent_Progress{Progress: line}}) },
		func(info daemon.RunInfo) {
			send(&daemonv1.RunEvent{Event: &daemonv1.RunEvent_Ready{Ready: daemon.RunInfoToProto(info)}})
		})
	return toStatus(err)
}

func (s *GRPCServer) SessionStart(ctx context.Context, req *daemonv1.SessionStartRequest) (*daemonv1.SessionInfo, error) {
	info, err := s.svc.SessionStart(ctx, daemon.SessionStartRequest{Namespace: req.GetNamespace(), Name: req.GetName(), Include: req.GetInclude()})
	if err != nil {
		return nil, toStatus(err)
	}
	return daemon.SessionInfoToProto(info), nil
}

func (s *GRPCServer) SessionDiff(ctx context.Context, req *daemonv1.SessionRequest) (*daemonv1.SessionDiffResponse, error) {
	d, err := s.svc.SessionDiff(ctx, req.GetNamespace())
	if err != nil {
		return nil, toStatus(err)
	}
	return daemon.SessionDiffToProto(d), nil
}

func (s *GRPCServer) SessionRollback(req *daemonv1.SessionRollbackRequest, stream grpc.ServerStreamingServer[daemonv1.SessionRollbackEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.SessionRollbackEvent{Event: &daemonv1.SessionRollbackEvent_Progress{Progress: line}})
	}
	res, err := s.svc.SessionRollback(stream.Context(), daemon.SessionRollbackRequestFromProto(req), progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.SessionRollbackEvent{Event: &daemonv1.SessionRollbackEvent_Result{Result: daemon.SessionRollbackResultToProto(res)}})
}

func (s *GRPCServer) SessionLog(ctx context.Context, req *daemonv1.SessionLogRequest) (*daemonv1.SessionLogResponse, error) {
	l, err := s.svc.SessionLog(ctx, daemon.SessionLogRequestFromProto(req))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return daemon.SessionLogToProto(l), nil
}

func (s *GRPCServer) SessionEnd(ctx context.Context, req *daemonv1.SessionRequest) (*daemonv1.SessionInfo, error) {
	info, err := s.svc.SessionEnd(ctx, req.GetNamespace())
	if err != nil {
		return nil, toStatus(err)
	}
	return daemon.SessionInfoToProto(info), nil
}
