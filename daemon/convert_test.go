package daemon

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/netpol"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/resolvconf"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// wire marshals m and reads it back, as the other side of the wire does.
func wire[M proto.Message](t *testing.T, m M, into M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	return into
}

// TestTraceReportOverTheWire sets every field of a report and carries it
// through its proto message.
func TestTraceReportOverTheWire(t *testing.T) {
	verdict := netpol.Verdict{Allowed: true, Selecting: []string{"shop/deny-all"}, Rule: "shop/allow ingress rule 1", Reason: "allowed"}
	want := TraceReport{
		Source: TraceSource{Pod: "client-1", Namespace: "shop", IP: "10.42.0.7", Node: "n1", PickedFrom: "deploy/client"},
		Target: TraceTarget{Input: "http://orders/x", Kind: "url", Host: "orders", Namespace: "shop", Name: "orders", Port: "http",
			Scheme: "http", Path: "/x"},
		FirstBroken: "probe", Conclusion: "broken at probe", DurationMillis: 812.5,
		Steps: []TraceStep{
			{Name: "dns", Status: TraceOK, Summary: "resolves", Details: []string{"a", "b"}, DNS: &TraceDNSResult{
				Name: "orders", ResolvConf: resolvconf.Config{Nameservers: []string{"10.43.0.10"}, Search: []string{"shop.svc.cluster.local"},
					Ndots: 5, Options: []string{"ndots:5"}},
				Queries: []TraceQuery{{Name: "orders.shop.svc.cluster.local.", Type: "A", Server: "10.43.0.10:53", Rcode: "NOERROR",
					Answers: []agent.DNSRecord{{Name: "orders.shop.svc.cluster.local.", Type: "A", TTL: 5, Data: "10.43.0.7"}},
					Error:   "", Millis: 1.5}},
				Answered: "orders.shop.svc.cluster.local.", Addresses: []string{"10.43.0.7"}}},
			{Name: "service", Status: TraceWarn, Summary: "svc", Service: &TraceServiceResult{Namespace: "shop", Name: "orders",
				Type: "ClusterIP", ClusterIP: "10.43.0.7", ExternalName: "x", Port: &TracePortMapping{Name: "http", Protocol: "TCP",
					Port: 80, TargetPort: "8080", AppProtocol: "http"}, Selector: map[string]string{"app": "orders"}, SelectedPods: 2,
				Endpoints: []TraceEndpoint{{Address: "10.42.0.9", Port: 8080, Pod: "orders-1", Namespace: "shop", Node: "n1",
					Ready: true, Serving: true, Terminating: true, Reason: "r"}}}},
			{Name: "policy", Status: TraceOK, Summary: "p", Policy: &TracePolicyResult{Verdicts: []TracePolicyVerdict{{
				Destination: "orders-1", Port: 8080, Decision: netpol.Decision{Egress: verdict, Ingress: verdict}}}}},
			{Name: "probe", Status: TraceBroken, Summary: "refused", Probe: &TraceProbeResult{Probes: []TraceProbe{{What: "service",
				Address: "10.43.0.7:80", Pod: "orders-1", Connected: true, ConnectMillis: 0.5, Error: "e", HTTPStatus: 503,
				HTTPMillis: 2.5, HTTPError: "he"}}}},
			{Name: "skipped", Status: TraceSkipped, Summary: "nothing"},
		},
	}
	got := TraceReportFromProto(wire(t, TraceReportToProto(want), &daemonv1.TraceReport{}))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report through the wire (-want +got)\n%s", diff)
	}
}

func TestExchangeOverTheWire(t *testing.T) {
	want := []*recording.Exchange{
		{ID: 7, Time: time.Unix(0, 1_700_000_000_123_456_789), Pod: "orders-1", Port: 18080, Source: "10.42.0.1:5555",
			Destination: recording.ToLaptop, Proto: "HTTP/1.1",
			Request: recording.Message{Method: "POST", Target: "/orders?x=1", Host: "orders",
				Header: http.Header{"Content-Type": {"application/json"}, "X-Many": {"a", "b"}}, Body: []byte(`{"a":1}`), BodySize: 7,
				Redacted: []string{"Authorization"}},
			Response: &recording.Message{Status: 201, Reason: "Created", Header: http.Header{"Date": {"now"}},
				Trailer: http.Header{"Grpc-Status": {"0"}}, Body: []byte("ok"), BodySize: 9000, Truncated: true},
			Send: time.Millisecond, Wait: 2 * time.Millisecond, Receive: 3 * time.Millisecond, Error: "closed mid-body"},
		{ID: 8, Request: recording.Message{Method: "GET", Target: "/"}}, // no time, no response, no headers
	}
	var p []*agentv1.Exchange
	for _, e := range agent.ExchangesToProto(want) {
		p = append(p, wire(t, e, &agentv1.Exchange{}))
	}
	if diff := cmp.Diff(want, agent.ExchangesFromProto(p)); diff != "" {
		t.Errorf("exchanges through the wire (-want +got)\n%s", diff)
	}
}

func TestReplayOverTheWire(t *testing.T) {
	res := replay.Result{Ref: "7", Round: 2, Method: "GET", Target: "/x", Status: 500, Latency: time.Millisecond, Error: "e",
		Diff: &replay.Diff{Status: "200 -> 500", Headers: []string{"X: a -> b"}, Body: []string{"$.a: 1 -> 2"}, NotCompared: []string{"n"},
			Trailers: []string{"Grpc-Status: 0 -> 5"}},
		Skipped: "s", GRPCStatus: "5", Recurred: new(bool)}
	// A field added to the result and left out of the wire fails here.
	allSet(t, res)
	allSet(t, *res.Diff)
	if diff := cmp.Diff(res, ReplayResultFromProto(wire(t, ReplayResultToProto(res), &daemonv1.ReplayResult{}))); diff != "" {
		t.Errorf("result through the wire (-want +got)\n%s", diff)
	}
	sum := replay.Summary{Sent: 10, Errors: 1, Skipped: 2, ByStatus: map[string]int{"200": 9}, P50: 1, P90: 2, P99: 3, Max: 4,
		Elapsed: 5, PerSecond: 2.5, Differing: 3, Recurred: 4}
	if diff := cmp.Diff(sum, ReplaySummaryFromProto(wire(t, ReplaySummaryToProto(sum), &daemonv1.ReplaySummary{}))); diff != "" {
		t.Errorf("summary through the wire (-want +got)\n%s", diff)
	}
	req := ReplayRequest{Namespace: "shop", Workload: "deploy/orders", Refs: []string{"a"}, To: "cluster",
		Exchanges: []*recording.Exchange{{ID: 1, Request: recording.Message{Method: "GET", Target: "/"}}},
		Options: replay.Options{Rate: 1, Speed: 2, Concurrency: 3, Count: 4, Header: http.Header{"X-A": {"1"}}, Diff: true,
			IgnoreHeaders: []string{"Date"}, Timeout: time.Second, ExpectRecorded: true}}
	for _, x := range []string{"status=5xx", "json:$.error"} {
		e, err := replay.ParseExpect(x)
		if err != nil {
			t.Fatal(err)
		}
		req.Options.Expect = append(req.Options.Expect, e)
	}
	got, err := ReplayRequestFromProto(wire(t, ReplayRequestToProto(req), &daemonv1.ReplayRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(expectStrings(req.Options.Expect), expectStrings(got.Options.Expect)); diff != "" {
		t.Errorf("expectations through the wire (-want +got)\n%s", diff)
	}
	req.Options.Expect, got.Options.Expect = nil, nil
	if diff := cmp.Diff(req, got, cmp.AllowUnexported(replay.Options{})); diff != "" {
		t.Errorf("request through the wire (-want +got)\n%s", diff)
	}
	bad := ReplayRequestToProto(req)
	bad.Expect = []string{"status=teapot"}
	if _, err := ReplayRequestFromProto(bad); !errors.Is(err, errdefs.ErrUser) {
		t.Errorf("a bad expectation on the wire: %v, want a user error", err)
	}
}

// allSet fails the test for each field of the struct v left at its zero
// value, so a round-trip test covers every field there is.
func allSet(t *testing.T, v any) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Errorf("%s.%s is not set in the test", rv.Type().Name(), rv.Type().Field(i).Name)
		}
	}
}

// TestAgentRequestsOverTheWire carries intercept and record requests, every
// field set, agent resources included, through their proto messages.
func TestAgentRequestsOverTheWire(t *testing.T) {
	res := AgentResources{CPURequest: "50m", CPULimit: "1", MemoryRequest: "48Mi", MemoryLimit: "160Mi"}
	allSet(t, res)

	ic := InterceptRequest{Namespace: "shop", Workload: "deploy/orders", ServicePort: "http", LocalPort: 3000,
		AgentImage: "agent:dev", RolloutTimeout: 60, AgentResources: res, LocalPortLater: true,
		Filter: httpfilter.Spec{Headers: []string{"x-user=ana"}, PathPrefix: "/api/", PathRegex: "/api/v[0-9]+"}, Mirror: true, Path: "direct", NoRestart: true, AgentIdle: 10 * time.Minute, Passive: true}
	allSet(t, ic)
	if diff := cmp.Diff(ic, InterceptRequestFromProto(wire(t, InterceptRequestToProto(ic), &daemonv1.InterceptRequest{}))); diff != "" {
		t.Errorf("intercept request through the wire (-want +got)\n%s", diff)
	}

	rec := RecordRequest{Namespace: "shop", Workload: "sts/db", ServicePort: "8080", AgentImage: "agent:dev", RolloutTimeout: 60,
		Redact: []string{"X-Key"}, NoRedact: true, BodyCap: 1024, Budget: 8 << 20, AgentResources: res, NoRestart: true, Passive: true}
	allSet(t, rec)
	if diff := cmp.Diff(rec, RecordRequestFromProto(wire(t, RecordRequestToProto(rec), &daemonv1.RecordRequest{}))); diff != "" {
		t.Errorf("record request through the wire (-want +got)\n%s", diff)
	}

	// No override stays no override.
	empty := InterceptRequest{Namespace: "shop"}
	if diff := cmp.Diff(empty, InterceptRequestFromProto(wire(t, InterceptRequestToProto(empty), &daemonv1.InterceptRequest{}))); diff != "" {
		t.Errorf("request without resources through the wire (-want +got)\n%s", diff)
	}
}

// TestRollbackResultsOverTheWire: every field of a rollback's results,
// the steps' reasons included, survives the wire.
func TestRollbackResultsOverTheWire(t *testing.T) {
	step := RollbackStep{Object: "secret/tether-agent-deployment-orders", Action: "kept", Reason: "the pod template still mounts it"}
	res := RollbackResult{Workload: "deployment/orders", Namespace: "shop", Steps: []RollbackStep{step}, Error: "partly rolled back"}
	allSet(t, step)
	allSet(t, res)
	got := RollbackResultsFromProto(wire(t, RollbackResultsToProto([]RollbackResult{res}), &daemonv1.RollbackResponse{}))
	if diff := cmp.Diff([]RollbackResult{res}, got); diff != "" {
		t.Errorf("rollback results through the wire (-want +got)\n%s", diff)
	}
}

// TestRunOverTheWire carries a run's request and info, every field set.
func TestRunOverTheWire(t *testing.T) {
	req := RunRequest{Namespace: "shop", Target: "deploy/orders", Container: "app", AgentImage: "agent:dev", Proxy: true,
		Services: []string{"db:5432"}, Path: "port-forward"}
	allSet(t, req)
	if diff := cmp.Diff(req, RunRequestFromProto(wire(t, RunRequestToProto(req), &daemonv1.RunRequest{}))); diff != "" {
		t.Errorf("run request through the wire (-want +got)\n%s", diff)
	}
	info := RunInfo{ID: "id", Namespace: "shop", Pod: "orders-1", Container: "app", PickedFrom: "deploy/orders", Via: "sidecar",
		ResolvConf:    resolvconf.Config{Nameservers: []string{"10.43.0.10"}, Search: []string{"shop.svc.cluster.local"}, Ndots: 5, Options: []string{"ndots:5"}},
		ResolvConfRaw: []byte("nameserver 10.43.0.10\n"), ServiceCIDRs: []string{"10.43.0.0/16"}, ServiceCIDRsSource: "dry run",
		PodCIDRs: []string{"10.42.0.0/24"}, PodCIDRsSource: "nodes", DialSocket: "/run/d.dial.sock", SOCKSAddr: "127.0.0.1:1",
		HTTPAddr: "127.0.0.1:2", ProxyUsername: "tether", ProxyPassword: "pw", Services: []string{"db:5432"}, Path: "direct"}
	allSet(t, info)
	if diff := cmp.Diff(info, RunInfoFromProto(wire(t, RunInfoToProto(info), &daemonv1.RunInfo{}))); diff != "" {
		t.Errorf("run info through the wire (-want +got)\n%s", diff)
	}
}

// TestInterceptInfoOverTheWire: every field of an intercept's status, the
// port's other intercepts included, survives the wire.
func TestInterceptInfoOverTheWire(t *testing.T) {
	since := time.Unix(1700000000, 5).UTC()
	pi := PortIntercept{Owner: "bob@desk", Filter: httpfilter.Spec{Headers: []string{"x-user=bob"}}, Mirror: true,
		Since: since, Requests: 7, Dropped: 2, Shed: 1, Pod: "orders-1"}
	allSet(t, pi)
	info := InterceptInfo{Name: "deploy/orders", Namespace: "shop", Service: "orders", ServicePort: 80, AgentPort: 17000,
		LocalPort: 3000, Pods: []string{"orders-1"}, Filter: httpfilter.Spec{PathPrefix: "/api/"}, Mirror: true, Owner: "ana@laptop",
		PortIntercepts: []PortIntercept{pi}, ToApp: 3, NotHTTP: 2, TLS: 1, Paths: map[string]string{"orders-1": "direct"}, Mode: "no-restart"}
	allSet(t, info)
	got := InterceptInfoFromProto(wire(t, InterceptInfoToProto(info), &daemonv1.InterceptInfo{}))
	got.PortIntercepts[0].Since = got.PortIntercepts[0].Since.UTC()
	if diff := cmp.Diff(info, got); diff != "" {
		t.Errorf("intercept info through the wire (-want +got)\n%s", diff)
	}
}

func TestSessionLogRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	want := SessionLog{Session: SessionInfo{Name: "incident-42", Namespace: "shop", Since: at, By: "ana", Objects: 3, Hash: "ab"},
		Events: []SessionEvent{
			{Kind: EventReproduce, At: at, By: "ana", Reproduce: &ReproduceRecord{Workload: "orders", To: "cluster", Expect: []string{"status=500"},
				Count: 10, Recurred: 9, Answers: 10, Skipped: 1, Requests: []ReproduceCount{{Ref: "x2x.1", Method: "POST", Target: "/c", Recurred: 9, Answers: 10}}}},
			{Kind: EventRollback, At: at, By: "ana", Error: "refused", Rollback: &SessionRollbackResult{Session: SessionInfo{Name: "incident-42", Namespace: "shop"},
				Steps: []SessionStep{{Object: "deployment/orders", Action: "update"}}}},
		}}
	if diff := cmp.Diff(want, SessionLogFromProto(SessionLogToProto(want))); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	req := SessionLogRequest{Namespace: "shop", Append: &want.Events[0]}
	if diff := cmp.Diff(req, SessionLogRequestFromProto(SessionLogRequestToProto(req))); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

// TestAgentPodOverTheWire carries a pod's agent state, every field set,
// the counts of recording from packets included, through the status
// message; an agent that does not record from packets stays without.
func TestAgentPodOverTheWire(t *testing.T) {
	passive := agent.PassiveStats{Conns: 12, MidStream: 3, Gaps: 1, DroppedPackets: 7}
	allSet(t, passive)
	pod := AgentPod{Pod: "orders-1", IdleSince: time.Unix(1700000000, 5), RecordingPaused: true, RecordIdle: time.Minute,
		Error: "unreachable", TunnelKept: true, Aside: true, Passive: &passive}
	allSet(t, pod)
	st := Status{Agents: []AgentInfo{{Workload: "deployment/orders", Namespace: "shop", Pods: []AgentPod{pod, {Pod: "orders-2"}}}}}
	got := StatusFromProto(wire(t, StatusToProto(st), &daemonv1.StatusResponse{}))
	if len(got.Agents) != 1 {
		t.Fatalf("agents through the wire: %+v", got.Agents)
	}
	if diff := cmp.Diff(st.Agents[0].Pods, got.Agents[0].Pods); diff != "" {
		t.Errorf("agent pods through the wire (-want +got)\n%s", diff)
	}
}
