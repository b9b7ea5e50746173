package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/batchq"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"

	"github.com/tetherkube/tether/internal/errdefs"
)

// GRPCServer adapts a Service to the generated Daemon server.
type GRPCServer struct {
	daemonv1.UnimplementedDaemonServer
	svc Service
}

// NewGRPCServer returns the adapter for svc.
func NewGRPCServer(svc Service) *GRPCServer { return &GRPCServer{svc: svc} }

// toStatus maps the Service's errors to gRPC codes by their class.
func toStatus(err error) error { return errdefs.ToGRPC(err) }

// fromStatus maps a gRPC error back to an error of the same class.
func fromStatus(err error) error { return errdefs.FromGRPC(err) }

func infoToProto(i InterceptInfo) *daemonv1.InterceptInfo {
	return &daemonv1.InterceptInfo{
		Name: i.Name, Namespace: i.Namespace, Service: i.Service, ServicePort: int32(i.ServicePort),
		AgentPort: int32(i.AgentPort), LocalPort: int32(i.LocalPort), Pods: i.Pods,
	}
}

func infoFromProto(p *daemonv1.InterceptInfo) InterceptInfo {
	return InterceptInfo{
		Name: p.GetName(), Namespace: p.GetNamespace(), Service: p.GetService(), ServicePort: int(p.GetServicePort()),
		AgentPort: int(p.GetAgentPort()), LocalPort: int(p.GetLocalPort()), Pods: p.GetPods(),
	}
}

func (s *GRPCServer) Status(ctx context.Context, _ *daemonv1.StatusRequest) (*daemonv1.StatusResponse, error) {
	st, err := s.svc.Status(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &daemonv1.StatusResponse{Context: st.Context, Server: st.Server, ServerVersion: st.ServerVersion,
		DaemonVersion: st.DaemonVersion, Pid: int32(st.PID)}
	for _, i := range st.Intercepts {
		resp.Intercepts = append(resp.Intercepts, infoToProto(i))
	}
	for _, a := range st.Agents {
		resp.Agents = append(resp.Agents, &daemonv1.AgentInfo{Workload: a.Workload, Namespace: a.Namespace, Recording: a.Recording,
			RedactionOff: a.RedactionOff, RedactedNames: a.Redacted})
	}
	return resp, nil
}

func (s *GRPCServer) Intercept(req *daemonv1.InterceptRequest, stream grpc.ServerStreamingServer[daemonv1.InterceptEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.InterceptEvent{Event: &daemonv1.InterceptEvent_Progress{Progress: line}})
	}
	info, err := s.svc.Intercept(stream.Context(), InterceptRequest{
		Namespace: req.GetNamespace(), Workload: req.GetWorkload(), ServicePort: req.GetServicePort(),
		LocalPort: int(req.GetLocalPort()), AgentImage: req.GetAgentImage(), RolloutTimeout: req.GetRolloutTimeoutSeconds(),
	}, progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.InterceptEvent{Event: &daemonv1.InterceptEvent_Ready{Ready: infoToProto(info)}})
}

func (s *GRPCServer) Leave(ctx context.Context, req *daemonv1.LeaveRequest) (*daemonv1.LeaveResponse, error) {
	return &daemonv1.LeaveResponse{}, toStatus(s.svc.Leave(ctx, req.GetNamespace(), req.GetName()))
}

func (s *GRPCServer) Rollback(ctx context.Context, req *daemonv1.RollbackRequest) (*daemonv1.RollbackResponse, error) {
	results, err := s.svc.Rollback(ctx, RollbackRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), All: req.GetAll(), Force: req.GetForce()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &daemonv1.RollbackResponse{}
	for _, r := range results {
		pr := &daemonv1.RollbackResult{Workload: r.Workload, Namespace: r.Namespace, Error: r.Error}
		for _, st := range r.Steps {
			pr.Steps = append(pr.Steps, &daemonv1.RollbackStep{Object: st.Object, Action: st.Action})
		}
		resp.Results = append(resp.Results, pr)
	}
	return resp, nil
}

func (s *GRPCServer) Quit(ctx context.Context, _ *daemonv1.QuitRequest) (*daemonv1.QuitResponse, error) {
	return &daemonv1.QuitResponse{}, toStatus(s.svc.Quit(ctx))
}

// Capture relays the agent's packets in batches, as the agent sends them
// (see agent.CaptureBatchPackets).
func (s *GRPCServer) Capture(req *daemonv1.CaptureRequest, stream grpc.ServerStreamingServer[daemonv1.CaptureEvent]) error {
	var mu sync.Mutex // progress and batches are sent from two goroutines
	send := func(ev *daemonv1.CaptureEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(ev)
	}
	progress := func(line string) {
		_ = send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Progress{Progress: line}})
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	q := batchq.New[*agentv1.Packet](agent.CaptureQueueBytes)
	sent := make(chan error, 1)
	go func() {
		sent <- q.Drain(agent.CaptureBatchPackets, agent.CaptureBatchBytes, func(b []*agentv1.Packet) error {
			return send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Packets{Packets: &agentv1.PacketBatch{Packets: b}}})
		})
	}()
	stats, err := s.svc.Capture(ctx, CaptureRequest{
		Namespace: req.GetNamespace(), Pod: req.GetPod(), Container: req.GetContainer(), Interface: req.GetInterface(),
		Filter: req.GetFilter(), Snaplen: int(req.GetSnaplen()), Count: req.GetCount(),
		Duration: time.Duration(req.GetDurationMillis()) * time.Millisecond, AgentImage: req.GetAgentImage(),
	}, progress, func(p agent.CapturedPacket) error {
		return q.Put(ctx, &agentv1.Packet{TimestampUnixNano: p.Timestamp.UnixNano(), Length: uint32(p.Length), Data: p.Data}, len(p.Data)+32)
	})
	q.Close()
	if serr := <-sent; serr != nil {
		return serr
	}
	if err != nil {
		return toStatus(err)
	}
	return send(&daemonv1.CaptureEvent{Event: &daemonv1.CaptureEvent_Stats{Stats: &agentv1.CaptureStats{
		Received: stats.Received, Dropped: stats.Dropped}}})
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

func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.rpc.Status(ctx, &daemonv1.StatusRequest{})
	if err != nil {
		return Status{}, fromStatus(err)
	}
	st := Status{Context: resp.GetContext(), Server: resp.GetServer(), ServerVersion: resp.GetServerVersion(),
		DaemonVersion: resp.GetDaemonVersion(), PID: int(resp.GetPid()), Intercepts: []InterceptInfo{}}
	for _, i := range resp.GetIntercepts() {
		st.Intercepts = append(st.Intercepts, infoFromProto(i))
	}
	for _, a := range resp.GetAgents() {
		st.Agents = append(st.Agents, AgentInfo{Workload: a.GetWorkload(), Namespace: a.GetNamespace(), Recording: a.GetRecording(),
			RedactionOff: a.GetRedactionOff(), Redacted: a.GetRedactedNames()})
	}
	return st, nil
}

func (c *Client) Intercept(ctx context.Context, req InterceptRequest, progress func(string)) (InterceptInfo, error) {
	stream, err := c.rpc.Intercept(ctx, &daemonv1.InterceptRequest{
		Namespace: req.Namespace, Workload: req.Workload, ServicePort: req.ServicePort, LocalPort: int32(req.LocalPort),
		AgentImage: req.AgentImage, RolloutTimeoutSeconds: req.RolloutTimeout,
	})
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
			return infoFromProto(e.Ready), nil
		}
	}
}

func (c *Client) Leave(ctx context.Context, namespace, name string) error {
	_, err := c.rpc.Leave(ctx, &daemonv1.LeaveRequest{Namespace: namespace, Name: name})
	return fromStatus(err)
}

func (c *Client) Rollback(ctx context.Context, req RollbackRequest) ([]RollbackResult, error) {
	resp, err := c.rpc.Rollback(ctx, &daemonv1.RollbackRequest{Namespace: req.Namespace, Workload: req.Workload, All: req.All, Force: req.Force})
	if err != nil {
		return nil, fromStatus(err)
	}
	var out []RollbackResult
	for _, r := range resp.GetResults() {
		rr := RollbackResult{Workload: r.GetWorkload(), Namespace: r.GetNamespace(), Error: r.GetError()}
		for _, s := range r.GetSteps() {
			rr.Steps = append(rr.Steps, RollbackStep{Object: s.GetObject(), Action: s.GetAction()})
		}
		out = append(out, rr)
	}
	return out, nil
}

func (c *Client) Quit(ctx context.Context) error {
	_, err := c.rpc.Quit(ctx, &daemonv1.QuitRequest{})
	return fromStatus(err)
}

func (c *Client) Capture(ctx context.Context, req CaptureRequest, progress func(string), emit func(agent.CapturedPacket) error) (agent.CaptureStats, error) {
	stream, err := c.rpc.Capture(ctx, &daemonv1.CaptureRequest{
		Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Interface: req.Interface, Filter: req.Filter,
		Snaplen: uint32(req.Snaplen), Count: req.Count, DurationMillis: req.Duration.Milliseconds(), AgentImage: req.AgentImage,
	})
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
			for _, p := range e.Packets.GetPackets() {
				if err := emit(agent.CapturedPacket{Timestamp: time.Unix(0, p.GetTimestampUnixNano()), Length: int(p.GetLength()), Data: p.GetData()}); err != nil {
					return agent.CaptureStats{}, err
				}
			}
		case *daemonv1.CaptureEvent_Stats:
			return agent.CaptureStats{Received: e.Stats.GetReceived(), Dropped: e.Stats.GetDropped()}, nil
		}
	}
}

func (s *GRPCServer) Trace(req *daemonv1.TraceRequest, stream grpc.ServerStreamingServer[daemonv1.TraceEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.TraceEvent{Event: &daemonv1.TraceEvent_Progress{Progress: line}})
	}
	rep, err := s.svc.Trace(stream.Context(), TraceRequest{Namespace: req.GetNamespace(), From: req.GetFrom(), To: req.GetTo(),
		AgentImage: req.GetAgentImage()}, progress)
	if err != nil {
		return toStatus(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.TraceEvent{Event: &daemonv1.TraceEvent_ReportJson{ReportJson: b}})
}

// Trace asks the daemon for a trace, relaying its progress lines.
func (c *Client) Trace(ctx context.Context, req TraceRequest, progress func(string)) (TraceReport, error) {
	stream, err := c.rpc.Trace(ctx, &daemonv1.TraceRequest{Namespace: req.Namespace, From: req.From, To: req.To, AgentImage: req.AgentImage})
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
		case *daemonv1.TraceEvent_ReportJson:
			var rep TraceReport
			if err := json.Unmarshal(e.ReportJson, &rep); err != nil {
				return rep, fmt.Errorf("read the daemon's trace report: %w", err)
			}
			return rep, nil
		}
	}
}

func (s *GRPCServer) Record(req *daemonv1.RecordRequest, stream grpc.ServerStreamingServer[daemonv1.RecordEvent]) error {
	progress := func(line string) {
		_ = stream.Send(&daemonv1.RecordEvent{Event: &daemonv1.RecordEvent_Progress{Progress: line}})
	}
	info, err := s.svc.Record(stream.Context(), RecordRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(),
		ServicePort: req.GetServicePort(), AgentImage: req.GetAgentImage(), RolloutTimeout: req.GetRolloutTimeoutSeconds(),
		Redact: req.GetRedact(), NoRedact: req.GetNoRedact(), BodyCap: int(req.GetBodyCap()), Budget: int(req.GetBudget())}, progress)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.RecordEvent{Event: &daemonv1.RecordEvent_Info{Info: &daemonv1.RecordInfo{
		Workload: info.Workload, Namespace: info.Namespace, Service: info.Service,
		ServicePort: uint32(info.ServicePort), AgentPort: uint32(info.AgentPort)}}})
}

func (s *GRPCServer) Requests(req *daemonv1.RequestsRequest, stream grpc.ServerStreamingServer[daemonv1.RequestsChunk]) error {
	var buf []byte
	pods, err := s.svc.Requests(stream.Context(), RequestsRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(),
		Filter: agent.FilterFromProto(req.GetFilter()), WithoutBodies: req.GetWithoutBodies(), Limit: int(req.GetLimit())},
		func(e *recording.Exchange) error {
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			buf = append(append(buf, b...), '\n')
			if len(buf) >= 512<<10 {
				err, buf = stream.Send(&daemonv1.RequestsChunk{ExchangesJsonl: buf}), nil
				return err
			}
			return nil
		})
	if err != nil {
		return toStatus(err)
	}
	last := &daemonv1.RequestsChunk{ExchangesJsonl: buf, Last: true}
	for _, p := range pods {
		last.Pods = append(last.Pods, &daemonv1.PodRecording{Pod: p.Pod, Stats: agent.StatsToProto(p.Stats), Error: p.Error})
	}
	return stream.Send(last)
}

// Record asks the daemon to put a recording agent in front of a port.
func (c *Client) Record(ctx context.Context, req RecordRequest, progress func(string)) (RecordInfo, error) {
	stream, err := c.rpc.Record(ctx, &daemonv1.RecordRequest{Namespace: req.Namespace, Workload: req.Workload, ServicePort: req.ServicePort,
		AgentImage: req.AgentImage, RolloutTimeoutSeconds: req.RolloutTimeout, Redact: req.Redact, NoRedact: req.NoRedact,
		BodyCap: uint64(req.BodyCap), Budget: uint64(req.Budget)})
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
			i := e.Info
			return RecordInfo{Workload: i.GetWorkload(), Namespace: i.GetNamespace(), Service: i.GetService(),
				ServicePort: int(i.GetServicePort()), AgentPort: int(i.GetAgentPort())}, nil
		}
	}
}

// Requests reads a workload's recorded exchanges through the daemon.
func (c *Client) Requests(ctx context.Context, req RequestsRequest, emit func(*recording.Exchange) error) ([]PodRecording, error) {
	stream, err := c.rpc.Requests(ctx, &daemonv1.RequestsRequest{Namespace: req.Namespace, Workload: req.Workload,
		Filter: agent.FilterToProto(req.Filter), WithoutBodies: req.WithoutBodies, Limit: uint32(req.Limit)})
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
		if err := agent.DecodeExchanges(chunk.GetExchangesJsonl(), emit); err != nil {
			return nil, err
		}
		if chunk.GetLast() {
			var pods []PodRecording
			for _, p := range chunk.GetPods() {
				pods = append(pods, PodRecording{Pod: p.GetPod(), Stats: agent.StatsFromProto(p.GetStats()), Error: p.GetError()})
			}
			return pods, nil
		}
	}
}

func (s *GRPCServer) Replay(req *daemonv1.ReplayRequest, stream grpc.ServerStreamingServer[daemonv1.ReplayEvent]) error {
	var exs []*recording.Exchange
	if err := agent.DecodeExchanges(req.GetExchangesJsonl(), func(e *recording.Exchange) error { exs = append(exs, e); return nil }); err != nil {
		return toStatus(errdefs.Mark(errdefs.ErrUser, err))
	}
	hdr := http.Header{}
	for _, h := range req.GetHeaders() {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return toStatus(errdefs.User("header %q: write \"Name: value\"", h))
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	sum, err := s.svc.Replay(stream.Context(), ReplayRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), Exchanges: exs,
		Refs: req.GetRefs(), To: req.GetTo(), Options: replay.Options{Rate: req.GetRate(), Speed: req.GetSpeed(),
			Concurrency: int(req.GetConcurrency()), Count: int(req.GetCount()), Header: hdr, Diff: req.GetDiff(),
			IgnoreHeaders: req.GetIgnoreHeaders(), Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond}},
		func(r replay.Result) error {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			return stream.Send(&daemonv1.ReplayEvent{Event: &daemonv1.ReplayEvent_ResultJson{ResultJson: b}})
		})
	if err != nil {
		return toStatus(err)
	}
	b, err := json.Marshal(sum)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&daemonv1.ReplayEvent{Event: &daemonv1.ReplayEvent_SummaryJson{SummaryJson: b}})
}

// Replay asks the daemon to replay exchanges, relaying each result.
func (c *Client) Replay(ctx context.Context, req ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
	var buf []byte
	for _, e := range req.Exchanges {
		b, err := json.Marshal(e)
		if err != nil {
			return replay.Summary{}, err
		}
		buf = append(append(buf, b...), '\n')
	}
	var headers []string
	for k, vs := range req.Options.Header {
		for _, v := range vs {
			headers = append(headers, k+": "+v)
		}
	}
	o := req.Options
	stream, err := c.rpc.Replay(ctx, &daemonv1.ReplayRequest{Namespace: req.Namespace, Workload: req.Workload, ExchangesJsonl: buf,
		Refs: req.Refs, To: req.To, Rate: o.Rate, Speed: o.Speed, Concurrency: uint32(o.Concurrency), Count: uint32(o.Count),
		Headers: headers, Diff: o.Diff, IgnoreHeaders: o.IgnoreHeaders, TimeoutMillis: o.Timeout.Milliseconds()},
		grpc.MaxCallSendMsgSize(1<<30))
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
		case *daemonv1.ReplayEvent_ResultJson:
			var r replay.Result
			if err := json.Unmarshal(e.ResultJson, &r); err != nil {
				return replay.Summary{}, err
			}
			if err := emit(r); err != nil {
				return replay.Summary{}, err
			}
		case *daemonv1.ReplayEvent_SummaryJson:
			var sum replay.Summary
			err := json.Unmarshal(e.SummaryJson, &sum)
			return sum, err
		}
	}
}
