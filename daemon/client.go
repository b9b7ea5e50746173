package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tetherkube/tether/internal/localsock"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// Dial connects to the daemon at the socket; it fails fast when none runs.
func Dial(ctx context.Context, path string) (*grpc.ClientConn, *Client, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("no daemon at %s: %w", path, err)
	}
	c.Close()
	// A dialer, not a unix:// target: a Windows path is no URL.
	// Exchanges pass through one per message, as large as the agent sent
	// them (agent.MaxMessageSize).
	conn, err := grpc.NewClient("passthrough:///daemon", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(agent.MaxMessageSize)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			// A socket another user planted must not get our commands.
			if err := localsock.CheckPeer(c); err != nil {
				c.Close()
				return nil, fmt.Errorf("the daemon socket %s: %w", path, err)
			}
			return c, nil
		}))
	if err != nil {
		return nil, nil, err
	}
	return conn, NewClient(conn), nil
}

// Client implements Service over a gRPC connection to a daemon.
type Client struct {
	rpc daemonv1.DaemonClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Client using conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: daemonv1.NewDaemonClient(conn)}
}

// fromStatus maps a gRPC error back to an error of the same class.
func fromStatus(err error) error { return errdefs.FromGRPC(err, ErrNoSession) }

func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.rpc.Status(ctx, &daemonv1.StatusRequest{})
	if err != nil {
		return Status{}, fromStatus(err)
	}
	return StatusFromProto(resp), nil
}

// Identity returns the answering daemon's build (buildinfo.Identity) and
// pid without the cost of Status; a daemon older than the call answers
// through Status.
func (c *Client) Identity(ctx context.Context) (version string, pid int, err error) {
	resp, err := c.rpc.Identity(ctx, &daemonv1.IdentityRequest{})
	if status.Code(err) == codes.Unimplemented {
		st, err := c.Status(ctx)
		return st.DaemonVersion, st.PID, err
	}
	if err != nil {
		return "", 0, fromStatus(err)
	}
	return resp.GetDaemonVersion(), int(resp.GetPid()), nil
}

func (c *Client) Intercept(ctx context.Context, req InterceptRequest, progress func(string)) (InterceptInfo, error) {
	stream, err := c.rpc.Intercept(ctx, InterceptRequestToProto(req))
	if err != nil {
		return InterceptInfo{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return InterceptInfo{}, errors.New("daemon ended the intercept call without an answer")
		}
		if err != nil {
			return InterceptInfo{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.InterceptEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.InterceptEvent_Ready:
			return InterceptInfoFromProto(e.Ready), nil
		}
	}
}

func (c *Client) Leave(ctx context.Context, namespace, name string) error {
	_, err := c.rpc.Leave(ctx, &daemonv1.LeaveRequest{Namespace: namespace, Name: name})
	return fromStatus(err)
}

func (c *Client) Rollback(ctx context.Context, req RollbackRequest) ([]RollbackResult, error) {
	resp, err := c.rpc.Rollback(ctx, RollbackRequestToProto(req))
	if err != nil {
		return nil, fromStatus(err)
	}
	return RollbackResultsFromProto(resp), nil
}

func (c *Client) Quit(ctx context.Context) error {
	_, err := c.rpc.Quit(ctx, &daemonv1.QuitRequest{})
	return fromStatus(err)
}

func (c *Client) Capture(ctx context.Context, req CaptureRequest, progress func(string), emit func([]agent.CapturedPacket) error) (agent.CaptureStats, error) {
	stream, err := c.rpc.Capture(ctx, CaptureRequestToProto(req))
	if err != nil {
		return agent.CaptureStats{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return agent.CaptureStats{}, errors.New("daemon ended the capture without statistics")
		}
		if err != nil {
			return agent.CaptureStats{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.CaptureEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.CaptureEvent_Packets:
			if err := emit(agent.PacketsFromProto(e.Packets)); err != nil {
				return agent.CaptureStats{}, err
			}
		case *daemonv1.CaptureEvent_Stats:
			return agent.CaptureStatsFromProto(e.Stats), nil
		}
	}
}

// Trace asks the daemon for a trace, relaying its progress lines.
func (c *Client) Trace(ctx context.Context, req TraceRequest, progress func(string)) (TraceReport, error) {
	stream, err := c.rpc.Trace(ctx, TraceRequestToProto(req))
	if err != nil {
		return TraceReport{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return TraceReport{}, errors.New("daemon ended the trace without a report")
		}
		if err != nil {
			return TraceReport{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.TraceEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.TraceEvent_Report:
			return TraceReportFromProto(e.Report), nil
		}
	}
}

// Record asks the daemon to put a recording agent in front of a port.
func (c *Client) Record(ctx context.Context, req RecordRequest, progress func(string)) (RecordInfo, error) {
	stream, err := c.rpc.Record(ctx, RecordRequestToProto(req))
	if err != nil {
		return RecordInfo{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return RecordInfo{}, errors.New("daemon ended the record call without a result")
		}
		if err != nil {
			return RecordInfo{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.RecordEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.RecordEvent_Info:
			return RecordInfoFromProto(e.Info), nil
		}
	}
}

// Requests reads a workload's recorded exchanges through the daemon.
func (c *Client) Requests(ctx context.Context, req RequestsRequest, emit func(*recording.Exchange) error) ([]PodRecording, error) {
	stream, err := c.rpc.Requests(ctx, RequestsRequestToProto(req))
	if err != nil {
		return nil, fromStatus(err)
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return nil, errors.New("daemon ended the requests call early")
		}
		if err != nil {
			return nil, fromStatus(err)
		}
		for _, e := range chunk.GetExchanges() {
			if err := emit(agent.ExchangeFromProto(e)); err != nil {
				return nil, err
			}
		}
		if chunk.GetLast() {
			return PodRecordingsFromProto(chunk.GetPods()), nil
		}
	}
}

// Replay asks the daemon to replay exchanges, relaying each result.
func (c *Client) Replay(ctx context.Context, req ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
	stream, err := c.rpc.Replay(ctx, ReplayRequestToProto(req), grpc.MaxCallSendMsgSize(1<<30))
	if err != nil {
		return replay.Summary{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return replay.Summary{}, errors.New("daemon ended the replay without a summary")
		}
		if err != nil {
			return replay.Summary{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.ReplayEvent_Result:
			if err := emit(ReplayResultFromProto(e.Result)); err != nil {
				return replay.Summary{}, err
			}
		case *daemonv1.ReplayEvent_Summary:
			return ReplaySummaryFromProto(e.Summary), nil
		}
	}
}

// Env asks the daemon for a container's environment, relaying its
// progress lines.
func (c *Client) Env(ctx context.Context, req EnvRequest, progress func(string)) (EnvResult, error) {
	stream, err := c.rpc.Env(ctx, EnvRequestToProto(req))
	if err != nil {
		return EnvResult{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return EnvResult{}, errors.New("daemon ended env without a result")
		}
		if err != nil {
			return EnvResult{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.EnvEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.EnvEvent_Result:
			return EnvResultFromProto(e.Result), nil
		}
	}
}

// Run starts a run through the daemon and holds it until ctx ends.
func (c *Client) Run(ctx context.Context, req RunRequest, progress func(string), ready func(RunInfo)) error {
	stream, err := c.rpc.Run(ctx, RunRequestToProto(req))
	if err != nil {
		return fromStatus(err)
	}
	started := false
	for {
		ev, err := stream.Recv()
		if started && ctx.Err() != nil {
			return nil // the caller ended the run
		}
		if err == io.EOF {
			return errors.New("the daemon ended the run")
		}
		if err != nil {
			return fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.RunEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.RunEvent_Ready:
			started = true
			ready(RunInfoFromProto(e.Ready))
		}
	}
}

func (c *Client) SessionStart(ctx context.Context, req SessionStartRequest) (SessionInfo, error) {
	resp, err := c.rpc.SessionStart(ctx, &daemonv1.SessionStartRequest{Namespace: req.Namespace, Name: req.Name, Include: req.Include})
	if err != nil {
		return SessionInfo{}, fromStatus(err)
	}
	return SessionInfoFromProto(resp), nil
}

func (c *Client) SessionDiff(ctx context.Context, namespace string) (SessionDiff, error) {
	resp, err := c.rpc.SessionDiff(ctx, &daemonv1.SessionRequest{Namespace: namespace})
	if err != nil {
		return SessionDiff{}, fromStatus(err)
	}
	return SessionDiffFromProto(resp), nil
}

func (c *Client) SessionRollback(ctx context.Context, req SessionRollbackRequest, progress func(string)) (SessionRollbackResult, error) {
	stream, err := c.rpc.SessionRollback(ctx, SessionRollbackRequestToProto(req))
	if err != nil {
		return SessionRollbackResult{}, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return SessionRollbackResult{}, errors.New("daemon ended the session rollback without an answer")
		}
		if err != nil {
			return SessionRollbackResult{}, fromStatus(err)
		}
		switch e := ev.GetEvent().(type) {
		case *daemonv1.SessionRollbackEvent_Progress:
			if progress != nil {
				progress(e.Progress)
			}
		case *daemonv1.SessionRollbackEvent_Result:
			return SessionRollbackResultFromProto(e.Result), nil
		}
	}
}

func (c *Client) SessionLog(ctx context.Context, req SessionLogRequest) (SessionLog, error) {
	resp, err := c.rpc.SessionLog(ctx, SessionLogRequestToProto(req))
	if err != nil {
		return SessionLog{}, fromStatus(err)
	}
	return SessionLogFromProto(resp), nil
}

func (c *Client) SessionEnd(ctx context.Context, namespace string) (SessionInfo, error) {
	resp, err := c.rpc.SessionEnd(ctx, &daemonv1.SessionRequest{Namespace: namespace})
	if err != nil {
		return SessionInfo{}, fromStatus(err)
	}
	return SessionInfoFromProto(resp), nil
}
