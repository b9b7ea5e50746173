package agent

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/tetherkube/tether/httpfilter"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	"github.com/tetherkube/tether/recording"
)

// The conversions between the API's types and proto/agent/v1, used by the
// client here and by the server's gRPC adapter (agent/server), and by the
// daemon's API where it carries the same messages.

// InfoToProto and InfoFromProto carry Info.
func InfoToProto(info Info) *agentv1.InfoResponse {
	resp := &agentv1.InfoResponse{Version: info.Version, Commit: info.Commit, PodName: info.PodName,
		PodNamespace: info.PodNamespace, StartedUnixNano: info.StartedAt.UnixNano(),
		RecordingPaused: info.RecordingPaused, RecordIdleNanos: int64(info.RecordIdle), Aside: info.Aside}
	resp.Passive = PassiveStatsToProto(info.Passive)
	if !info.IdleSince.IsZero() {
		resp.IdleSinceUnixNano = info.IdleSince.UnixNano()
	}
	for _, f := range info.Forwards {
		pf := &agentv1.Forward{ListenPort: uint32(f.ListenPort), AppPort: uint32(f.AppPort), Intercepted: f.Intercepted,
			ToApp: f.ToApp, NotHttp: f.NotHTTP, Tls: f.TLS}
		for _, ic := range f.Intercepts {
			pf.Intercepts = append(pf.Intercepts, &agentv1.InterceptStatus{Id: ic.ID, Owner: ic.Owner,
				Filter: RouteFilterToProto(ic.Filter), Mirror: ic.Mirror, SinceUnixNano: ic.Since.UnixNano(),
				Requests: ic.Requests, Dropped: ic.Dropped, Shed: ic.Shed})
		}
		resp.Forwards = append(resp.Forwards, pf)
	}
	return resp
}

func InfoFromProto(resp *agentv1.InfoResponse) Info {
	info := Info{Version: resp.GetVersion(), Commit: resp.GetCommit(), PodName: resp.GetPodName(),
		PodNamespace: resp.GetPodNamespace(), StartedAt: time.Unix(0, resp.GetStartedUnixNano()),
		RecordingPaused: resp.GetRecordingPaused(), RecordIdle: time.Duration(resp.GetRecordIdleNanos()), Aside: resp.GetAside()}
	info.Passive = PassiveStatsFromProto(resp.GetPassive())
	if n := resp.GetIdleSinceUnixNano(); n != 0 {
		info.IdleSince = time.Unix(0, n)
	}
	for _, f := range resp.GetForwards() {
		fs := ForwardStatus{
			Forward:     Forward{ListenPort: int(f.GetListenPort()), AppPort: int(f.GetAppPort())},
			Intercepted: f.GetIntercepted(),
			ToApp:       f.GetToApp(), NotHTTP: f.GetNotHttp(), TLS: f.GetTls(),
		}
		for _, ic := range f.GetIntercepts() {
			fs.Intercepts = append(fs.Intercepts, InterceptStatus{
				InterceptSpec: InterceptSpec{ListenPort: fs.ListenPort, ID: ic.GetId(), Owner: ic.GetOwner(),
					Filter: RouteFilterFromProto(ic.GetFilter()), Mirror: ic.GetMirror()},
				Since: time.Unix(0, ic.GetSinceUnixNano()), Requests: ic.GetRequests(), Dropped: ic.GetDropped(),
				Shed: ic.GetShed(),
			})
		}
		info.Forwards = append(info.Forwards, fs)
	}
	return info
}

// InterceptSpecToProto and InterceptSpecFromProto carry an InterceptSpec.
// PassiveStatsToProto and PassiveStatsFromProto carry PassiveStats, nil
// (no recording from packets) as nil; the daemon's status carries them too.
func PassiveStatsToProto(p *PassiveStats) *agentv1.PassiveStats {
	if p == nil {
		return nil
	}
	return &agentv1.PassiveStats{Conns: p.Conns, MidStream: p.MidStream, Gaps: p.Gaps, DroppedPackets: p.DroppedPackets}
}

func PassiveStatsFromProto(p *agentv1.PassiveStats) *PassiveStats {
	if p == nil {
		return nil
	}
	return &PassiveStats{Conns: p.GetConns(), MidStream: p.GetMidStream(), Gaps: p.GetGaps(), DroppedPackets: p.GetDroppedPackets()}
}

func InterceptSpecToProto(s InterceptSpec) *agentv1.InterceptRequest {
	return &agentv1.InterceptRequest{ListenPort: uint32(s.ListenPort), Id: s.ID, Owner: s.Owner,
		Filter: RouteFilterToProto(s.Filter), Mirror: s.Mirror}
}

func InterceptSpecFromProto(r *agentv1.InterceptRequest) InterceptSpec {
	return InterceptSpec{ListenPort: int(r.GetListenPort()), ID: r.GetId(), Owner: r.GetOwner(),
		Filter: RouteFilterFromProto(r.GetFilter()), Mirror: r.GetMirror()}
}

// RouteFilterToProto and RouteFilterFromProto carry a filter.
func RouteFilterToProto(f httpfilter.Spec) *agentv1.RouteFilter {
	if f.IsZero() {
		return nil
	}
	return &agentv1.RouteFilter{Headers: f.Headers, PathPrefix: f.PathPrefix, PathRegex: f.PathRegex}
}

func RouteFilterFromProto(f *agentv1.RouteFilter) httpfilter.Spec {
	return httpfilter.Spec{Headers: f.GetHeaders(), PathPrefix: f.GetPathPrefix(), PathRegex: f.GetPathRegex()}
}

// CaptureRequestToProto and CaptureRequestFromProto carry a CaptureRequest.
func CaptureRequestToProto(req CaptureRequest) *agentv1.CaptureRequest {
	return &agentv1.CaptureRequest{Interface: req.Interface, Filter: req.Filter, Snaplen: uint32(req.Snaplen),
		Count: req.Count, DurationMillis: req.Duration.Milliseconds()}
}

func CaptureRequestFromProto(req *agentv1.CaptureRequest) CaptureRequest {
	return CaptureRequest{Interface: req.GetInterface(), Filter: req.GetFilter(), Snaplen: int(req.GetSnaplen()),
		Count: req.GetCount(), Duration: time.Duration(req.GetDurationMillis()) * time.Millisecond}
}

// PacketsToProto and PacketsFromProto carry a batch of packets.
func PacketsToProto(batch []CapturedPacket) *agentv1.PacketBatch {
	b := &agentv1.PacketBatch{Packets: make([]*agentv1.Packet, len(batch))}
	for i, p := range batch {
		b.Packets[i] = &agentv1.Packet{TimestampUnixNano: p.Timestamp.UnixNano(), Length: uint32(p.Length), Data: p.Data}
	}
	return b
}

func PacketsFromProto(b *agentv1.PacketBatch) []CapturedPacket {
	out := make([]CapturedPacket, len(b.GetPackets()))
	for i, p := range b.GetPackets() {
		out[i] = CapturedPacket{Timestamp: time.Unix(0, p.GetTimestampUnixNano()), Length: int(p.GetLength()), Data: p.GetData()}
	}
	return out
}

// CaptureStatsToProto and CaptureStatsFromProto carry CaptureStats.
func CaptureStatsToProto(st CaptureStats) *agentv1.CaptureStats {
	return &agentv1.CaptureStats{Received: st.Received, Dropped: st.Dropped}
}

func CaptureStatsFromProto(st *agentv1.CaptureStats) CaptureStats {
	return CaptureStats{Received: st.GetReceived(), Dropped: st.GetDropped()}
}

// DNSQueryToProto and DNSQueryFromProto carry a DNSQuery.
func DNSQueryToProto(q DNSQuery) *agentv1.DNSQueryRequest {
	return &agentv1.DNSQueryRequest{Server: q.Server, Name: q.Name, Type: q.Type, TimeoutMillis: q.Timeout.Milliseconds()}
}

func DNSQueryFromProto(q *agentv1.DNSQueryRequest) DNSQuery {
	return DNSQuery{Server: q.GetServer(), Name: q.GetName(), Type: q.GetType(),
		Timeout: time.Duration(q.GetTimeoutMillis()) * time.Millisecond}
}

// DNSAnswerToProto and DNSAnswerFromProto carry a DNSAnswer.
func DNSAnswerToProto(a DNSAnswer) *agentv1.DNSQueryResponse {
	resp := &agentv1.DNSQueryResponse{Rcode: a.Rcode, LatencyNanos: int64(a.Latency), Error: a.Error, Tcp: a.TCP}
	for _, r := range a.Answers {
		resp.Answers = append(resp.Answers, &agentv1.DNSRecord{Name: r.Name, Type: r.Type, Ttl: r.TTL, Data: r.Data})
	}
	return resp
}

func DNSAnswerFromProto(resp *agentv1.DNSQueryResponse) DNSAnswer {
	a := DNSAnswer{Rcode: resp.GetRcode(), Latency: time.Duration(resp.GetLatencyNanos()), Error: resp.GetError(), TCP: resp.GetTcp()}
	for _, r := range resp.GetAnswers() {
		a.Answers = append(a.Answers, DNSRecord{Name: r.GetName(), Type: r.GetType(), TTL: r.GetTtl(), Data: r.GetData()})
	}
	return a
}

// ProbeRequestToProto and ProbeRequestFromProto carry a ProbeRequest.
func ProbeRequestToProto(req ProbeRequest) *agentv1.ProbeRequest {
	pr := &agentv1.ProbeRequest{Address: req.Address, TimeoutMillis: req.Timeout.Milliseconds()}
	if h := req.HTTP; h != nil {
		pr.Http = &agentv1.HTTPProbe{Method: h.Method, Path: h.Path, Host: h.Host}
	}
	return pr
}

func ProbeRequestFromProto(req *agentv1.ProbeRequest) ProbeRequest {
	pr := ProbeRequest{Address: req.GetAddress(), Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond}
	if h := req.GetHttp(); h != nil {
		pr.HTTP = &HTTPProbe{Method: h.GetMethod(), Path: h.GetPath(), Host: h.GetHost()}
	}
	return pr
}

// ProbeResultToProto and ProbeResultFromProto carry a ProbeResult.
func ProbeResultToProto(r ProbeResult) *agentv1.ProbeResponse {
	return &agentv1.ProbeResponse{Connected: r.Connected, ConnectNanos: int64(r.Connect), Error: r.Error,
		LocalAddress: r.LocalAddress, HttpStatus: int32(r.HTTPStatus), HttpNanos: int64(r.HTTPLatency), HttpError: r.HTTPError}
}

func ProbeResultFromProto(resp *agentv1.ProbeResponse) ProbeResult {
	return ProbeResult{Connected: resp.GetConnected(), Connect: time.Duration(resp.GetConnectNanos()), Error: resp.GetError(),
		LocalAddress: resp.GetLocalAddress(), HTTPStatus: int(resp.GetHttpStatus()), HTTPLatency: time.Duration(resp.GetHttpNanos()),
		HTTPError: resp.GetHttpError()}
}

// ExchangesRequestToProto and ExchangesRequestFromProto carry an
// ExchangesRequest.
func ExchangesRequestToProto(req ExchangesRequest) *agentv1.ExchangesRequest {
	return &agentv1.ExchangesRequest{Filter: FilterToProto(req.Filter), WithoutBodies: req.WithoutBodies, Limit: uint32(req.Limit)}
}

func ExchangesRequestFromProto(req *agentv1.ExchangesRequest) ExchangesRequest {
	return ExchangesRequest{Filter: FilterFromProto(req.GetFilter()), WithoutBodies: req.GetWithoutBodies(), Limit: int(req.GetLimit())}
}

// FilterToProto and FilterFromProto carry a recording.Filter.
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

// StatsToProto and StatsFromProto carry RecordingStats.
func StatsToProto(st RecordingStats) *agentv1.RecordingStats {
	return &agentv1.RecordingStats{
		Connections: st.Connections, Exchanges: st.Exchanges, Evicted: st.Evicted, NotHttp: st.NotHTTP, Malformed: st.Malformed,
		Upgraded: st.Upgraded, StoredBytes: st.StoredBytes, InflightBytes: st.InflightBytes, BudgetBytes: st.BudgetBytes,
		Held: st.Held, BodyCap: st.BodyCap, RedactionOff: st.RedactionOff, RedactedNames: st.RedactedNames, Limited: st.Limited,
	}
}

func StatsFromProto(st *agentv1.RecordingStats) RecordingStats {
	return RecordingStats{Connections: st.GetConnections(), Exchanges: st.GetExchanges(), Evicted: st.GetEvicted(),
		NotHTTP: st.GetNotHttp(), Malformed: st.GetMalformed(), Upgraded: st.GetUpgraded(), StoredBytes: st.GetStoredBytes(),
		InflightBytes: st.GetInflightBytes(), BudgetBytes: st.GetBudgetBytes(), Held: st.GetHeld(), BodyCap: st.GetBodyCap(),
		RedactionOff: st.GetRedactionOff(), RedactedNames: st.GetRedactedNames(), Limited: st.GetLimited()}
}

// ExchangesToProto and ExchangesFromProto carry recorded exchanges.
func ExchangesToProto(exs []*recording.Exchange) []*agentv1.Exchange {
	out := make([]*agentv1.Exchange, len(exs))
	for i, e := range exs {
		out[i] = ExchangeToProto(e)
	}
	return out
}

func ExchangesFromProto(ps []*agentv1.Exchange) []*recording.Exchange {
	out := make([]*recording.Exchange, len(ps))
	for i, p := range ps {
		out[i] = ExchangeFromProto(p)
	}
	return out
}

// ExchangeToProto and ExchangeFromProto carry one recorded exchange.
func ExchangeToProto(e *recording.Exchange) *agentv1.Exchange {
	p := &agentv1.Exchange{Id: e.ID, Pod: e.Pod, Port: uint32(e.Port), Source: e.Source, Destination: e.Destination,
		Proto: e.Proto, Request: messageToProto(&e.Request), Response: messageToProto(e.Response),
		SendNanos: int64(e.Send), WaitNanos: int64(e.Wait), ReceiveNanos: int64(e.Receive), Error: e.Error}
	if !e.Time.IsZero() {
		p.TimeUnixNano = e.Time.UnixNano()
	}
	return p
}

func ExchangeFromProto(p *agentv1.Exchange) *recording.Exchange {
	e := &recording.Exchange{ID: p.GetId(), Pod: p.GetPod(), Port: int(p.GetPort()), Source: p.GetSource(),
		Destination: p.GetDestination(), Proto: p.GetProto(), Response: messageFromProto(p.GetResponse()),
		Send: time.Duration(p.GetSendNanos()), Wait: time.Duration(p.GetWaitNanos()), Receive: time.Duration(p.GetReceiveNanos()),
		Error: p.GetError()}
	if n := p.GetTimeUnixNano(); n != 0 {
		e.Time = time.Unix(0, n)
	}
	if r := messageFromProto(p.GetRequest()); r != nil {
		e.Request = *r
	}
	return e
}

func messageToProto(m *recording.Message) *agentv1.HTTPMessage {
	if m == nil {
		return nil
	}
	return &agentv1.HTTPMessage{Method: m.Method, Target: m.Target, Host: m.Host, Status: int32(m.Status), Reason: m.Reason,
		Header: headerToProto(m.Header), Trailer: headerToProto(m.Trailer), Body: m.Body, BodySize: m.BodySize,
		Truncated: m.Truncated, Redacted: m.Redacted}
}

func messageFromProto(p *agentv1.HTTPMessage) *recording.Message {
	if p == nil {
		return nil
	}
	return &recording.Message{Method: p.GetMethod(), Target: p.GetTarget(), Host: p.GetHost(), Status: int(p.GetStatus()),
		Reason: p.GetReason(), Header: headerFromProto(p.GetHeader()), Trailer: headerFromProto(p.GetTrailer()),
		Body: p.GetBody(), BodySize: p.GetBodySize(), Truncated: p.GetTruncated(), Redacted: p.GetRedacted()}
}

func headerToProto(h http.Header) []*agentv1.Header {
	if h == nil {
		return nil
	}
	out := make([]*agentv1.Header, 0, len(h))
	for _, k := range slices.Sorted(maps.Keys(h)) { // the same exchange, the same bytes
		out = append(out, &agentv1.Header{Name: k, Values: h[k]})
	}
	return out
}

func headerFromProto(hs []*agentv1.Header) http.Header {
	if len(hs) == 0 {
		return nil
	}
	h := make(http.Header, len(hs))
	for _, p := range hs {
		h[p.GetName()] = append(h[p.GetName()], p.GetValues()...)
	}
	return h
}

// DialBackRequestToProto and DialBackRequestFromProto carry a
// DialBackRequest.
func DialBackRequestToProto(req DialBackRequest) *agentv1.DialBackRequest {
	return &agentv1.DialBackRequest{Address: req.Address, Certificate: req.Certificate, TimeoutMillis: req.Timeout.Milliseconds()}
}

func DialBackRequestFromProto(req *agentv1.DialBackRequest) DialBackRequest {
	return DialBackRequest{Address: req.GetAddress(), Certificate: req.GetCertificate(),
		Timeout: time.Duration(req.GetTimeoutMillis()) * time.Millisecond}
}

func ProfileRequestToProto(req ProfileRequest) *agentv1.StartProfileRequest {
	return &agentv1.StartProfileRequest{BlockRateNs: int64(req.BlockRate), MutexFraction: int32(req.MutexFraction)}
}

func ProfileRequestFromProto(req *agentv1.StartProfileRequest) ProfileRequest {
	return ProfileRequest{BlockRate: int(req.GetBlockRateNs()), MutexFraction: int(req.GetMutexFraction())}
}

func ProfilesToProto(p Profiles) *agentv1.StopProfileResponse {
	return &agentv1.StopProfileResponse{Cpu: p.CPU, Block: p.Block, Mutex: p.Mutex, Heap: p.Heap}
}

func ProfilesFromProto(resp *agentv1.StopProfileResponse) Profiles {
	return Profiles{CPU: resp.GetCpu(), Block: resp.GetBlock(), Mutex: resp.GetMutex(), Heap: resp.GetHeap()}
}
