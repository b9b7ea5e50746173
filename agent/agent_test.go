package agent

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tetherkube/tether/internal/buildinfo"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr bool
	}{
		{"127.0.0.1:7341", false},
		{"[::1]:7341", false},
		{"localhost:7341", false},
		{"0.0.0.0:7341", true},
		{":7341", true},
		{"10.0.0.1:7341", true},
		{"127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := Config{ListenAddr: tt.addr}.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate(%q) = %v, wantErr %v", tt.addr, err, tt.wantErr)
			}
		})
	}
}

// TestInfoOverGRPC runs the agent's real gRPC server on loopback and asks it
// through the client, as the daemon will through the tunnel.
func TestInfoOverGRPC(t *testing.T) {
	a, err := New(Config{ListenAddr: "127.0.0.1:0", PodName: "orders-1", PodNamespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.ServeListener(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	info, err := NewClient(conn).Info(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.PodName != "orders-1" || info.PodNamespace != "shop" {
		t.Errorf("pod = %s/%s, want shop/orders-1", info.PodNamespace, info.PodName)
	}
	if info.Version != buildinfo.Get().Version {
		t.Errorf("version = %q, want %q", info.Version, buildinfo.Get().Version)
	}
	if !info.StartedAt.Equal(a.started) {
		t.Errorf("startedAt = %v, want %v", info.StartedAt, a.started)
	}
}
