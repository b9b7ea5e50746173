package daemon

import (
	"net/http"
	"strings"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/errdefs"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
	"github.com/tetherkube/tether/replay"
)

// The conversions between the API's types and proto/daemon/v1, used by the
// Client here and by the server's gRPC adapter (daemon/server).

func InterceptInfoToProto(i InterceptInfo) *daemonv1.InterceptInfo {
	p := &daemonv1.InterceptInfo{
		Name: i.Name, Namespace: i.Namespace, Service: i.Service, ServicePort: int32(i.ServicePort),
		AgentPort: int32(i.AgentPort), LocalPort: int32(i.LocalPort), Pods: i.Pods,
		Filter: filterToProto(i.Filter), Mirror: i.Mirror, Owner: i.Owner, ToApp: i.ToApp, NotHttp: i.NotHTTP, Tls: i.TLS,
		Paths: i.Paths, Mode: i.Mode,
	}
	for _, pi := range i.PortIntercepts {
		p.PortIntercepts = append(p.PortIntercepts, &daemonv1.PortIntercept{Owner: pi.Owner, Filter: filterToProto(pi.Filter),
			Mirror: pi.Mirror, SinceUnixNano: pi.Since.UnixNano(), Requests: pi.Requests, Dropped: pi.Dropped, Shed: pi.Shed, Pod: pi.Pod})
	}
	return p
}

func InterceptInfoFromProto(p *daemonv1.InterceptInfo) InterceptInfo {
	i := InterceptInfo{
		Name: p.GetName(), Namespace: p.GetNamespace(), Service: p.GetService(), ServicePort: int(p.GetServicePort()),
		AgentPort: int(p.GetAgentPort()), LocalPort: int(p.GetLocalPort()), Pods: p.GetPods(),
		Filter: filterFromProto(p.GetFilter()), Mirror: p.GetMirror(), Owner: p.GetOwner(),
		ToApp: p.GetToApp(), NotHTTP: p.GetNotHttp(), TLS: p.GetTls(), Paths: p.GetPaths(), Mode: p.GetMode(),
	}
	for _, pi := range p.GetPortIntercepts() {
		i.PortIntercepts = append(i.PortIntercepts, PortIntercept{Owner: pi.GetOwner(), Filter: filterFromProto(pi.GetFilter()),
			Mirror: pi.GetMirror(), Since: time.Unix(0, pi.GetSinceUnixNano()), Requests: pi.GetRequests(), Dropped: pi.GetDropped(), Shed: pi.GetShed(), Pod: pi.GetPod()})
	}
	return i
}

func filterToProto(f httpfilter.Spec) *daemonv1.HTTPFilter {
	if f.IsZero() {
		return nil
	}
	return &daemonv1.HTTPFilter{Headers: f.Headers, PathPrefix: f.PathPrefix, PathRegex: f.PathRegex}
}

func filterFromProto(f *daemonv1.HTTPFilter) httpfilter.Spec {
	return httpfilter.Spec{Headers: f.GetHeaders(), PathPrefix: f.GetPathPrefix(), PathRegex: f.GetPathRegex()}
}

func StatusToProto(st Status) *daemonv1.StatusResponse {
	resp := &daemonv1.StatusResponse{Context: st.Context, Server: st.Server, ServerVersion: st.ServerVersion,
		DaemonVersion: st.DaemonVersion, Pid: int32(st.PID)}
	for _, i := range st.Intercepts {
		resp.Intercepts = append(resp.Intercepts, InterceptInfoToProto(i))
	}
	for _, a := range st.Agents {
		pa := &daemonv1.AgentInfo{Workload: a.Workload, Namespace: a.Namespace, Recording: a.Recording,
			RedactionOff: a.RedactionOff, RedactedNames: a.Redacted, NoRestartUnheld: a.NoRestartUnheld}
		for _, p := range a.Pods {
			pp := &daemonv1.AgentPod{Pod: p.Pod, RecordingPaused: p.RecordingPaused, RecordIdleNanos: int64(p.RecordIdle), Error: p.Error, TunnelKept: p.TunnelKept, Aside: p.Aside,
				Passive: agent.PassiveStatsToProto(p.Passive)}
			if !p.IdleSince.IsZero() {
				pp.IdleSinceUnixNano = p.IdleSince.UnixNano()
			}
			pa.Pods = append(pa.Pods, pp)
		}
		resp.Agents = append(resp.Agents, pa)
	}
	for _, se := range st.Sessions {
		resp.Sessions = append(resp.Sessions, SessionInfoToProto(se))
	}
	return resp
}

func StatusFromProto(resp *daemonv1.StatusResponse) Status {
	st := Status{Context: resp.GetContext(), Server: resp.GetServer(), ServerVersion: resp.GetServerVersion(),
		DaemonVersion: resp.GetDaemonVersion(), PID: int(resp.GetPid()), Intercepts: []InterceptInfo{}}
	for _, i := range resp.GetIntercepts() {
		st.Intercepts = append(st.Intercepts, InterceptInfoFromProto(i))
	}
	for _, a := range resp.GetAgents() {
		ai := AgentInfo{Workload: a.GetWorkload(), Namespace: a.GetNamespace(), Recording: a.GetRecording(),
			RedactionOff: a.GetRedactionOff(), Redacted: a.GetRedactedNames(), NoRestartUnheld: a.GetNoRestartUnheld()}
		for _, p := range a.GetPods() {
			ap := AgentPod{Pod: p.GetPod(), RecordingPaused: p.GetRecordingPaused(), RecordIdle: time.Duration(p.GetRecordIdleNanos()), Error: p.GetError(),
				TunnelKept: p.GetTunnelKept(), Aside: p.GetAside(), Passive: agent.PassiveStatsFromProto(p.GetPassive())}
			if n := p.GetIdleSinceUnixNano(); n != 0 {
				ap.IdleSince = time.Unix(0, n)
			}
			ai.Pods = append(ai.Pods, ap)
		}
		st.Agents = append(st.Agents, ai)
	}
	for _, se := range resp.GetSessions() {
		st.Sessions = append(st.Sessions, SessionInfoFromProto(se))
	}
	return st
}

func InterceptRequestToProto(req InterceptRequest) *daemonv1.InterceptRequest {
	return &daemonv1.InterceptRequest{Namespace: req.Namespace, Workload: req.Workload, ServicePort: req.ServicePort,
		LocalPort: int32(req.LocalPort), AgentImage: req.AgentImage, RolloutTimeoutSeconds: req.RolloutTimeout,
		AgentResources: agentResourcesToProto(req.AgentResources), LocalPortLater: req.LocalPortLater,
		Filter: filterToProto(req.Filter), Mirror: req.Mirror, Path: req.Path, NoRestart: req.NoRestart, AgentIdleNanos: int64(req.AgentIdle), Passive: req.Passive}
}

func InterceptRequestFromProto(req *daemonv1.InterceptRequest) InterceptRequest {
	return InterceptRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), ServicePort: req.GetServicePort(),
		LocalPort: int(req.GetLocalPort()), AgentImage: req.GetAgentImage(), RolloutTimeout: req.GetRolloutTimeoutSeconds(),
		AgentResources: agentResourcesFromProto(req.GetAgentResources()), LocalPortLater: req.GetLocalPortLater(),
		Filter: filterFromProto(req.GetFilter()), Mirror: req.GetMirror(), Path: req.GetPath(), NoRestart: req.GetNoRestart(),
		AgentIdle: time.Duration(req.GetAgentIdleNanos()), Passive: req.GetPassive()}
}

func agentResourcesToProto(r AgentResources) *daemonv1.AgentResources {
	if r == (AgentResources{}) {
		return nil
	}
	return &daemonv1.AgentResources{CpuRequest: r.CPURequest, CpuLimit: r.CPULimit,
		MemoryRequest: r.MemoryRequest, MemoryLimit: r.MemoryLimit}
}

func agentResourcesFromProto(r *daemonv1.AgentResources) AgentResources {
	return AgentResources{CPURequest: r.GetCpuRequest(), CPULimit: r.GetCpuLimit(),
		MemoryRequest: r.GetMemoryRequest(), MemoryLimit: r.GetMemoryLimit()}
}

func RollbackRequestToProto(req RollbackRequest) *daemonv1.RollbackRequest {
	return &daemonv1.RollbackRequest{Namespace: req.Namespace, Workload: req.Workload, All: req.All, Force: req.Force}
}

func RollbackRequestFromProto(req *daemonv1.RollbackRequest) RollbackRequest {
	return RollbackRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), All: req.GetAll(), Force: req.GetForce()}
}

func RollbackResultsToProto(results []RollbackResult) *daemonv1.RollbackResponse {
	resp := &daemonv1.RollbackResponse{}
	for _, r := range results {
		pr := &daemonv1.RollbackResult{Workload: r.Workload, Namespace: r.Namespace, Error: r.Error}
		for _, st := range r.Steps {
			pr.Steps = append(pr.Steps, &daemonv1.RollbackStep{Object: st.Object, Action: st.Action, Reason: st.Reason})
		}
		resp.Results = append(resp.Results, pr)
	}
	return resp
}

func RollbackResultsFromProto(resp *daemonv1.RollbackResponse) []RollbackResult {
	var out []RollbackResult
	for _, r := range resp.GetResults() {
		rr := RollbackResult{Workload: r.GetWorkload(), Namespace: r.GetNamespace(), Error: r.GetError()}
		for _, s := range r.GetSteps() {
			rr.Steps = append(rr.Steps, RollbackStep{Object: s.GetObject(), Action: s.GetAction(), Reason: s.GetReason()})
		}
		out = append(out, rr)
	}
	return out
}

func CaptureRequestToProto(req CaptureRequest) *daemonv1.CaptureRequest {
	return &daemonv1.CaptureRequest{Namespace: req.Namespace, Pod: req.Pod, Container: req.Container, Interface: req.Interface,
		Filter: req.Filter, Snaplen: uint32(req.Snaplen), Count: req.Count, DurationMillis: req.Duration.Milliseconds(),
		AgentImage: req.AgentImage}
}

func CaptureRequestFromProto(req *daemonv1.CaptureRequest) CaptureRequest {
	return CaptureRequest{Namespace: req.GetNamespace(), Pod: req.GetPod(), Container: req.GetContainer(), Interface: req.GetInterface(),
		Filter: req.GetFilter(), Snaplen: int(req.GetSnaplen()), Count: req.GetCount(),
		Duration: time.Duration(req.GetDurationMillis()) * time.Millisecond, AgentImage: req.GetAgentImage()}
}

func TraceRequestToProto(req TraceRequest) *daemonv1.TraceRequest {
	return &daemonv1.TraceRequest{Namespace: req.Namespace, From: req.From, To: req.To, AgentImage: req.AgentImage}
}

func TraceRequestFromProto(req *daemonv1.TraceRequest) TraceRequest {
	return TraceRequest{Namespace: req.GetNamespace(), From: req.GetFrom(), To: req.GetTo(), AgentImage: req.GetAgentImage()}
}

func RecordRequestToProto(req RecordRequest) *daemonv1.RecordRequest {
	return &daemonv1.RecordRequest{Namespace: req.Namespace, Workload: req.Workload, ServicePort: req.ServicePort,
		AgentImage: req.AgentImage, RolloutTimeoutSeconds: req.RolloutTimeout, Redact: req.Redact, NoRedact: req.NoRedact,
		BodyCap: uint64(req.BodyCap), Budget: uint64(req.Budget), AgentResources: agentResourcesToProto(req.AgentResources),
		NoRestart: req.NoRestart, Passive: req.Passive}
}

func RecordRequestFromProto(req *daemonv1.RecordRequest) RecordRequest {
	return RecordRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), ServicePort: req.GetServicePort(),
		AgentImage: req.GetAgentImage(), RolloutTimeout: req.GetRolloutTimeoutSeconds(), Redact: req.GetRedact(),
		NoRedact: req.GetNoRedact(), BodyCap: int(req.GetBodyCap()), Budget: int(req.GetBudget()),
		AgentResources: agentResourcesFromProto(req.GetAgentResources()), NoRestart: req.GetNoRestart(), Passive: req.GetPassive()}
}

func RecordInfoToProto(info RecordInfo) *daemonv1.RecordInfo {
	return &daemonv1.RecordInfo{Workload: info.Workload, Namespace: info.Namespace, Service: info.Service,
		ServicePort: uint32(info.ServicePort), AgentPort: uint32(info.AgentPort)}
}

func RecordInfoFromProto(i *daemonv1.RecordInfo) RecordInfo {
	return RecordInfo{Workload: i.GetWorkload(), Namespace: i.GetNamespace(), Service: i.GetService(),
		ServicePort: int(i.GetServicePort()), AgentPort: int(i.GetAgentPort())}
}

func RequestsRequestToProto(req RequestsRequest) *daemonv1.RequestsRequest {
	return &daemonv1.RequestsRequest{Namespace: req.Namespace, Workload: req.Workload, Filter: agent.FilterToProto(req.Filter),
		WithoutBodies: req.WithoutBodies, Limit: uint32(req.Limit)}
}

func RequestsRequestFromProto(req *daemonv1.RequestsRequest) RequestsRequest {
	return RequestsRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), Filter: agent.FilterFromProto(req.GetFilter()),
		WithoutBodies: req.GetWithoutBodies(), Limit: int(req.GetLimit())}
}

func PodRecordingsToProto(pods []PodRecording) []*daemonv1.PodRecording {
	var out []*daemonv1.PodRecording
	for _, p := range pods {
		out = append(out, &daemonv1.PodRecording{Pod: p.Pod, Stats: agent.StatsToProto(p.Stats), Error: p.Error})
	}
	return out
}

func PodRecordingsFromProto(ps []*daemonv1.PodRecording) []PodRecording {
	var out []PodRecording
	for _, p := range ps {
		out = append(out, PodRecording{Pod: p.GetPod(), Stats: agent.StatsFromProto(p.GetStats()), Error: p.GetError()})
	}
	return out
}

func ReplayRequestToProto(req ReplayRequest) *daemonv1.ReplayRequest {
	o := req.Options
	var headers []string
	for k, vs := range o.Header {
		for _, v := range vs {
			headers = append(headers, k+": "+v)
		}
	}
	return &daemonv1.ReplayRequest{Namespace: req.Namespace, Workload: req.Workload, Exchanges: agent.ExchangesToProto(req.Exchanges),
		Refs: req.Refs, To: req.To, Rate: o.Rate, Speed: o.Speed, Concurrency: uint32(o.Concurrency), Count: uint32(o.Count),
		Headers: headers, Diff: o.Diff, IgnoreHeaders: o.IgnoreHeaders, TimeoutMillis: o.Timeout.Milliseconds(),
		Expect: expectStrings(o.Expect), ExpectRecorded: o.ExpectRecorded}
}

func expectStrings(xs []replay.Expect) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

// ReplayRequestFromProto fails, as a user error, on a header that is not
// "Name: value".
func ReplayRequestFromProto(req *daemonv1.ReplayRequest) (ReplayRequest, error) {
	hdr := http.Header{}
	for _, h := range req.GetHeaders() {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return ReplayRequest{}, errdefs.User("header %q: write \"Name: value\"", h)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	var expect []replay.Expect
	for _, x := range req.GetExpect() {
		e, err := replay.ParseExpect(x)
		if err != nil {
			return ReplayRequest{}, errdefs.Mark(errdefs.ErrUser, err)
		}
		expect = append(expect, e)
	}
	return ReplayRequest{Namespace: req.GetNamespace(), Workload: req.GetWorkload(), Exchanges: agent.ExchangesFromProto(req.GetExchanges()),
		Refs: req.GetRefs(), To: req.GetTo(), Options: replay.Options{Rate: req.GetRate(), Speed: req.GetSpeed(),
			Concurrency: int(req.GetConcurrency()), Count: int(req.GetCount()), Header: hdr, Diff: req.GetDiff(),
			IgnoreHeaders: req.GetIgnoreHeaders(), Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond,
			Expect: expect, ExpectRecorded: req.GetExpectRecorded()}}, nil
}

func ReplayResultToProto(r replay.Result) *daemonv1.ReplayResult {
	p := &daemonv1.ReplayResult{Ref: r.Ref, Round: int32(r.Round), Method: r.Method, Target: r.Target, Status: int32(r.Status),
		LatencyNanos: int64(r.Latency), Error: r.Error, Skipped: r.Skipped, GrpcStatus: r.GRPCStatus, Recurred: r.Recurred}
	if d := r.Diff; d != nil {
		p.Diff = &daemonv1.ReplayDiff{Status: d.Status, Headers: d.Headers, Body: d.Body, NotCompared: d.NotCompared, Trailers: d.Trailers}
	}
	return p
}

func ReplayResultFromProto(p *daemonv1.ReplayResult) replay.Result {
	r := replay.Result{Ref: p.GetRef(), Round: int(p.GetRound()), Method: p.GetMethod(), Target: p.GetTarget(),
		Status: int(p.GetStatus()), Latency: time.Duration(p.GetLatencyNanos()), Error: p.GetError(), Skipped: p.GetSkipped(),
		GRPCStatus: p.GetGrpcStatus()}
	if p.Recurred != nil {
		v := p.GetRecurred()
		r.Recurred = &v
	}
	if d := p.GetDiff(); d != nil {
		r.Diff = &replay.Diff{Status: d.GetStatus(), Headers: d.GetHeaders(), Body: d.GetBody(), NotCompared: d.GetNotCompared(), Trailers: d.GetTrailers()}
	}
	return r
}

func ReplaySummaryToProto(s replay.Summary) *daemonv1.ReplaySummary {
	p := &daemonv1.ReplaySummary{Sent: int64(s.Sent), Errors: int64(s.Errors), Skipped: int64(s.Skipped),
		P50Nanos: int64(s.P50), P90Nanos: int64(s.P90), P99Nanos: int64(s.P99), MaxNanos: int64(s.Max),
		ElapsedNanos: int64(s.Elapsed), PerSecond: s.PerSecond, Differing: int64(s.Differing), Recurred: int64(s.Recurred)}
	if s.ByStatus != nil {
		p.ByStatus = make(map[string]int64, len(s.ByStatus))
		for k, v := range s.ByStatus {
			p.ByStatus[k] = int64(v)
		}
	}
	return p
}

func ReplaySummaryFromProto(p *daemonv1.ReplaySummary) replay.Summary {
	s := replay.Summary{Sent: int(p.GetSent()), Errors: int(p.GetErrors()), Skipped: int(p.GetSkipped()),
		P50: time.Duration(p.GetP50Nanos()), P90: time.Duration(p.GetP90Nanos()), P99: time.Duration(p.GetP99Nanos()),
		Max: time.Duration(p.GetMaxNanos()), Elapsed: time.Duration(p.GetElapsedNanos()), PerSecond: p.GetPerSecond(),
		Differing: int(p.GetDiffering()), Recurred: int(p.GetRecurred())}
	s.ByStatus = make(map[string]int, len(p.GetByStatus()))
	for k, v := range p.GetByStatus() {
		s.ByStatus[k] = int(v)
	}
	return s
}
