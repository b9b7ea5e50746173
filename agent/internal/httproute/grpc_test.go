package httproute

import (
	"context"
	"net"
	"testing"

	"github.com/tetherkube/tether/httpfilter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// grpcBackend serves grpc-go's own health service, answering status.
func grpcBackend(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus("orders", status)
	healthpb.RegisterHealthServer(srv, h)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return &backend{name: status.String(), addr: l.Addr().String()}
}

// TestGRPCRoutedPerCall: grpc-go's client and servers, one connection:
// each call goes where its metadata says, unary and streaming, with the
// status carried in trailers.
func TestGRPCRoutedPerCall(t *testing.T) {
	app := grpcBackend(t, healthpb.HealthCheckResponse_SERVING)
	laptop := grpcBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	r, addr := front(t, app, Config{})
	r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-tether-user=ana")}}, Dial: laptop.dial}})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	ana := metadata.AppendToOutgoingContext(ctx, "x-tether-user", "ana")
	for i, tt := range []struct {
		ctx  context.Context
		want healthpb.HealthCheckResponse_ServingStatus
	}{{ctx, healthpb.HealthCheckResponse_SERVING}, {ana, healthpb.HealthCheckResponse_NOT_SERVING}, {ctx, healthpb.HealthCheckResponse_SERVING}} {
		resp, err := hc.Check(tt.ctx, &healthpb.HealthCheckRequest{Service: "orders"})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.Status != tt.want {
			t.Errorf("call %d: %v, want %v", i, resp.Status, tt.want)
		}
		if _, err := hc.Check(tt.ctx, &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
			t.Errorf("call %d: an unknown service gave no error (the status trailer was lost)", i)
		}
	}
	w, err := hc.Watch(ana, &healthpb.HealthCheckRequest{Service: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := w.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("streaming call: %v, %v; want the laptop's NOT_SERVING", resp, err)
	}
}
