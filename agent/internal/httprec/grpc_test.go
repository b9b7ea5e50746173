package httprec

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	hellopb "google.golang.org/grpc/examples/helloworld/helloworld"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// greeter answers helloworld's SayHello as grpc-go's example server does.
type greeter struct {
	hellopb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, in *hellopb.HelloRequest) (*hellopb.HelloReply, error) {
	return &hellopb.HelloReply{Message: "Hello " + in.GetName()}, nil
}

// TestGRPCEveryConnectionRecorded runs grpc-go clients and servers
// (helloworld's Greeter from grpc-go's examples, and grpc-go's own health
// service) through a recording proxy, h2c with prior knowledge as gRPC
// speaks in a cluster, one connection per call or two: every call is
// recorded, however the connection's first bytes arrived (grpc-go's
// server sends its SETTINGS before it reads the client's preface, and the
// preface may come in pieces).
func TestGRPCEveryConnectionRecorded(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		register   func(*grpc.Server)
		call       func(context.Context, *grpc.ClientConn) error
	}{
		{"helloworld", "/helloworld.Greeter/SayHello",
			func(s *grpc.Server) { hellopb.RegisterGreeterServer(s, greeter{}) },
			func(ctx context.Context, cc *grpc.ClientConn) error {
				r, err := hellopb.NewGreeterClient(cc).SayHello(ctx, &hellopb.HelloRequest{Name: "orders"})
				if err == nil && r.GetMessage() != "Hello orders" {
					err = fmt.Errorf("answer %q", r.GetMessage())
				}
				return err
			}},
		{"health", "/grpc.health.v1.Health/Check",
			func(s *grpc.Server) {
				hs := health.NewServer()
				hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
				healthpb.RegisterHealthServer(s, hs)
			},
			func(ctx context.Context, cc *grpc.ClientConn) error {
				r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
				if err == nil && r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					err = fmt.Errorf("status %v", r.GetStatus())
				}
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			tc.register(srv)
			go srv.Serve(l)
			t.Cleanup(srv.Stop)

			ring := NewRing(16 << 20)
			addr := recordingProxy(t, ring, l.Addr().String(), DefaultOptions())
			const conns, callsPerConn = 12, 2
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for range conns {
				cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				for range callsPerConn {
					if err := tc.call(ctx, cc); err != nil {
						t.Fatal(err)
					}
				}
				cc.Close()
			}
			got := waitExchanges(t, ring, conns*callsPerConn)
			for i, e := range got {
				if e.Proto != "HTTP/2.0" || e.Request.Method != "POST" || e.Request.Target != tc.path ||
					e.Status() != 200 || e.Response.Trailer.Get("Grpc-Status") != "0" || e.Error != "" {
					t.Errorf("exchange %d: %s %s %s -> %d, trailer %v, error %q", i, e.Proto, e.Request.Method, e.Request.Target, e.Status(), e.Response.Trailer, e.Error)
				}
			}
			if st := ring.Stats(); st.NotHTTP != 0 || st.Malformed != 0 || st.Limited != 0 {
				t.Errorf("stats %+v: every connection is gRPC", st)
			}
		})
	}
}

// TestHTTP2EveryConnectionRecorded: golang.org/x/net/http2's client and
// h2c server, a new connection per request (the server's SETTINGS race the
// client's preface on each): every request is recorded.
func TestHTTP2EveryConnectionRecorded(t *testing.T) {
	srv := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok " + r.URL.Path))
	}), &http2.Server{}))
	defer srv.Close()
	ring := NewRing(16 << 20)
	addr := recordingProxy(t, ring, strings.TrimPrefix(srv.URL, "http://"), DefaultOptions())
	const n = 12
	for i := range n {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return net.Dial(network, a)
		}}
		resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/c%d", addr, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
	seen := map[string]bool{}
	for i, e := range waitExchanges(t, ring, n) { // connections end in any order
		seen[e.Request.Target] = true
		if e.Proto != "HTTP/2.0" || e.Status() != 200 || string(e.Response.Body) != "ok "+e.Request.Target {
			t.Errorf("exchange %d: %s %s -> %d %q", i, e.Proto, e.Request.Target, e.Status(), e.Response.Body)
		}
	}
	if len(seen) != n {
		t.Errorf("recorded %v, want /c0../c%d", seen, n-1)
	}
	if st := ring.Stats(); st.NotHTTP != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v: every connection is HTTP/2", st)
	}
}
