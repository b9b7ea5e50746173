package replay

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/tetherkube/tether/recording"
)

// grpcFrame is a gRPC length-prefixed message.
func grpcFrame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// healthServer serves grpc-go's own health service on a loopback port.
func healthServer(t testing.TB) (*health.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return hs, lis.Addr().String()
}

// grpcExchange is a Health/Check call shaped as the agent records an h2c
// exchange: pseudo-headers in Method, Target and Host, trailers kept.
func grpcExchange(t testing.TB, host, service string, status healthpb.HealthCheckResponse_ServingStatus) *recording.Exchange {
	req := grpcFrame(t, &healthpb.HealthCheckRequest{Service: service})
	resp := grpcFrame(t, &healthpb.HealthCheckResponse{Status: status})
	return &recording.Exchange{ID: 1, Time: time.Unix(1000, 0), Pod: "greeter-x2x", Proto: "HTTP/2.0",
		Request: recording.Message{Method: "POST", Target: "/grpc.health.v1.Health/Check", Host: host,
			Header: http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "Grpc-Accept-Encoding": {"identity"}, "User-Agent": {"grpc-go/1.85.0"}},
			Body:   req, BodySize: int64(len(req))},
		Response: &recording.Message{Status: 200, Header: http.Header{"Content-Type": {"application/grpc"}},
			Body: resp, BodySize: int64(len(resp)), Trailer: http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {""}}}}
}

func replayOne(t testing.TB, client *http.Client, e *recording.Exchange, o Options) Result {
	t.Helper()
	var got Result
	o.Diff = true
	if _, err := Run(context.Background(), client, []*recording.Exchange{e}, ref, o, func(r Result) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestReplayGRPC replays a recorded gRPC call to grpc-go's health server:
// it goes out as h2c with prior knowledge, and --diff compares
// grpc-status, grpc-message and the messages field by field.
func TestReplayGRPC(t *testing.T) {
	hs, addr := healthServer(t)
	base := &url.URL{Scheme: "http", Host: addr}
	client := &http.Client{Transport: &http.Transport{}}

	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	r := replayOne(t, client, grpcExchange(t, addr, "", healthpb.HealthCheckResponse_SERVING), Options{Base: base})
	if r.Error != "" || r.Status != 200 || !r.Diff.Empty() {
		t.Fatalf("same answer: %+v %+v", r, r.Diff)
	}
	if r.GRPCStatus != "0" {
		t.Errorf("grpc status %q, want 0", r.GRPCStatus)
	}

	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	r = replayOne(t, client, grpcExchange(t, addr, "", healthpb.HealthCheckResponse_SERVING), Options{Base: base})
	if diff := cmp.Diff([]string{"message[0] 1: 1 -> 2"}, r.Diff.Body); diff != "" || len(r.Diff.Headers) != 0 || len(r.Diff.Trailers) != 0 {
		t.Errorf("changed status field: %+v (-want +got)\n%s", r.Diff, diff)
	}

	// An unknown service: the server answers NOT_FOUND with trailers only.
	r = replayOne(t, client, grpcExchange(t, addr, "nosuch", healthpb.HealthCheckResponse_SERVING), Options{Base: base})
	want := []string{"Grpc-Message: (none) -> unknown service", "Grpc-Status: 0 -> 5"}
	if diff := cmp.Diff(want, r.Diff.Trailers); diff != "" {
		t.Errorf("trailers (-want +got)\n%s", diff)
	}
	if r.GRPCStatus != "5" || len(r.Diff.Body) != 1 || !strings.Contains(r.Diff.Body[0], "1 recorded, 0 replayed") {
		t.Errorf("unknown service: %+v %+v", r, r.Diff)
	}
}

// TestReplayH2CThroughDialer: a recorded HTTP/2 exchange goes out as h2c,
// through the dial function of the client's transport (the daemon's seam
// for --to cluster).
func TestReplayH2CThroughDialer(t *testing.T) {
	var proto atomic.Value
	srv := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Trailer", "X-Sum")
		w.Write(b)
		w.Header().Set("X-Sum", "ok")
	}), &http2.Server{}))
	defer srv.Close()
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}}}
	e := &recording.Exchange{ID: 1, Proto: "HTTP/2.0", Pod: "svc-x2x", Destination: recording.ToApp,
		Request:  recording.Message{Method: "PUT", Target: "/x?y=1", Host: "svc.ns", Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hi"), BodySize: 2},
		Response: &recording.Message{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hi"), BodySize: 2, Trailer: http.Header{"X-Sum": {"ok"}}}}
	r := replayOne(t, client, e, Options{ToRecordedHost: true})
	if r.Error != "" || !r.Diff.Empty() {
		t.Fatalf("%+v %+v", r, r.Diff)
	}
	if proto.Load() != "HTTP/2.0" || dials.Load() == 0 {
		t.Errorf("the server saw %v after %d dials through the client's dialer", proto.Load(), dials.Load())
	}
	// An HTTP/1.1 recording still goes out as HTTP/1.1.
	e.Proto = "HTTP/1.1"
	if r := replayOne(t, client, e, Options{ToRecordedHost: true}); r.Error != "" || proto.Load() != "HTTP/1.1" {
		t.Errorf("HTTP/1.1: %+v, server saw %v", r, proto.Load())
	}
}

// TestReplayBrowserHARAsHTTP1: a browser's HAR says HTTP/2 of a TLS site;
// replayed to a plain http:// server it goes out as HTTP/1.1, as before
// (h2c only for what tether's agent recorded, and for gRPC).
func TestReplayBrowserHARAsHTTP1(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	e := &recording.Exchange{ID: 1, Proto: "HTTP/2", Request: recording.Message{Method: "GET", Target: "/", Host: "example.com", Header: http.Header{}},
		Response: &recording.Message{Status: 200, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte("HTTP/1.1")}}
	if r := replayOne(t, srv.Client(), e, Options{Base: base}); r.Error != "" || !r.Diff.Empty() {
		t.Errorf("%+v %+v", r, r.Diff)
	}
}
