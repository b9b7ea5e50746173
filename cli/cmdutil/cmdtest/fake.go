// Package cmdtest helps test commands through their seams: a fake daemon
// whose methods each test overrides as it needs, served through the real
// gRPC adapter, and a Factory whose kube context needs no cluster.
package cmdtest

import (
	"context"
	"fmt"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// FakeService is a daemon.Service whose methods call the matching func
// field. A test sets only the funcs its command calls; any other method
// returns an internal error naming itself.
type FakeService struct {
	daemon.Service // methods added to the interface later panic until faked here

	StatusFunc    func(ctx context.Context) (daemon.Status, error)
	InterceptFunc func(ctx context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error)
	LeaveFunc     func(ctx context.Context, namespace, name string) error
	RollbackFunc  func(ctx context.Context, req daemon.RollbackRequest) ([]daemon.RollbackResult, error)
	QuitFunc      func(ctx context.Context) error
	CaptureFunc   func(ctx context.Context, req daemon.CaptureRequest, progress func(string), emit func(agent.CapturedPacket) error) (agent.CaptureStats, error)
	TraceFunc     func(ctx context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error)
	EnvFunc       func(ctx context.Context, req daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error)
	RecordFunc    func(ctx context.Context, req daemon.RecordRequest, progress func(string)) (daemon.RecordInfo, error)
	RequestsFunc  func(ctx context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error)
	ReplayFunc    func(ctx context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error)
	RunFunc       func(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error

	SessionStartFunc    func(ctx context.Context, req daemon.SessionStartRequest) (daemon.SessionInfo, error)
	SessionDiffFunc     func(ctx context.Context, namespace string) (daemon.SessionDiff, error)
	SessionRollbackFunc func(ctx context.Context, req daemon.SessionRollbackRequest, progress func(string)) (daemon.SessionRollbackResult, error)
	SessionEndFunc      func(ctx context.Context, namespace string) (daemon.SessionInfo, error)
	SessionLogFunc      func(ctx context.Context, req daemon.SessionLogRequest) (daemon.SessionLog, error)
}

func (f *FakeService) SessionStart(ctx context.Context, req daemon.SessionStartRequest) (daemon.SessionInfo, error) {
	if f.SessionStartFunc == nil {
		return daemon.SessionInfo{}, unset("SessionStart")
	}
	return f.SessionStartFunc(ctx, req)
}

func (f *FakeService) SessionDiff(ctx context.Context, namespace string) (daemon.SessionDiff, error) {
	if f.SessionDiffFunc == nil {
		return daemon.SessionDiff{}, unset("SessionDiff")
	}
	return f.SessionDiffFunc(ctx, namespace)
}

func (f *FakeService) SessionRollback(ctx context.Context, req daemon.SessionRollbackRequest, progress func(string)) (daemon.SessionRollbackResult, error) {
	if f.SessionRollbackFunc == nil {
		return daemon.SessionRollbackResult{}, unset("SessionRollback")
	}
	return f.SessionRollbackFunc(ctx, req, progress)
}

func (f *FakeService) SessionLog(ctx context.Context, req daemon.SessionLogRequest) (daemon.SessionLog, error) {
	if f.SessionLogFunc == nil {
		return daemon.SessionLog{}, unset("SessionLog")
	}
	return f.SessionLogFunc(ctx, req)
}

func (f *FakeService) SessionEnd(ctx context.Context, namespace string) (daemon.SessionInfo, error) {
	if f.SessionEndFunc == nil {
		return daemon.SessionInfo{}, unset("SessionEnd")
	}
	return f.SessionEndFunc(ctx, namespace)
}

func (f *FakeService) Run(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error {
	if f.RunFunc == nil {
		return unset("Run")
	}
	return f.RunFunc(ctx, req, progress, ready)
}

func unset(method string) error {
	return errdefs.Mark(errdefs.ErrInternal, fmt.Errorf("cmdtest.FakeService: %s called but not faked", method))
}

func (f *FakeService) Status(ctx context.Context) (daemon.Status, error) {
	if f.StatusFunc == nil {
		return daemon.Status{}, unset("Status")
	}
	return f.StatusFunc(ctx)
}

func (f *FakeService) Intercept(ctx context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
	if f.InterceptFunc == nil {
		return daemon.InterceptInfo{}, unset("Intercept")
	}
	return f.InterceptFunc(ctx, req, progress)
}

func (f *FakeService) Leave(ctx context.Context, namespace, name string) error {
	if f.LeaveFunc == nil {
		return unset("Leave")
	}
	return f.LeaveFunc(ctx, namespace, name)
}

func (f *FakeService) Rollback(ctx context.Context, req daemon.RollbackRequest) ([]daemon.RollbackResult, error) {
	if f.RollbackFunc == nil {
		return nil, unset("Rollback")
	}
	return f.RollbackFunc(ctx, req)
}

func (f *FakeService) Quit(ctx context.Context) error {
	if f.QuitFunc == nil {
		return unset("Quit")
	}
	return f.QuitFunc(ctx)
}

// Capture calls CaptureFunc, which emits one packet at a time; each goes
// to the caller as a batch of one.
func (f *FakeService) Capture(ctx context.Context, req daemon.CaptureRequest, progress func(string), emit func([]agent.CapturedPacket) error) (agent.CaptureStats, error) {
	if f.CaptureFunc == nil {
		return agent.CaptureStats{}, unset("Capture")
	}
	return f.CaptureFunc(ctx, req, progress, func(p agent.CapturedPacket) error { return emit([]agent.CapturedPacket{p}) })
}

func (f *FakeService) Trace(ctx context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error) {
	if f.TraceFunc == nil {
		return daemon.TraceReport{}, unset("Trace")
	}
	return f.TraceFunc(ctx, req, progress)
}

func (f *FakeService) Record(ctx context.Context, req daemon.RecordRequest, progress func(string)) (daemon.RecordInfo, error) {
	if f.RecordFunc == nil {
		return daemon.RecordInfo{}, unset("Record")
	}
	return f.RecordFunc(ctx, req, progress)
}

func (f *FakeService) Requests(ctx context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
	if f.RequestsFunc == nil {
		return nil, unset("Requests")
	}
	return f.RequestsFunc(ctx, req, emit)
}

func (f *FakeService) Replay(ctx context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
	if f.ReplayFunc == nil {
		return replay.Summary{}, unset("Replay")
	}
	return f.ReplayFunc(ctx, req, emit)
}

func (f *FakeService) Env(ctx context.Context, req daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error) {
	if f.EnvFunc == nil {
		return daemon.EnvResult{}, unset("Env")
	}
	return f.EnvFunc(ctx, req, progress)
}
