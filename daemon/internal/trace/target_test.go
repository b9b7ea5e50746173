package trace

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/internal/errdefs"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "orders", want: Target{Kind: KindName, Host: "orders"}},
		{in: "orders.shop:8080", want: Target{Kind: KindName, Host: "orders.shop", Port: "8080"}},
		{in: "example.com.", want: Target{Kind: KindName, Host: "example.com."}},
		{in: "10.43.0.10:53", want: Target{Kind: KindIP, Host: "10.43.0.10", Port: "53"}},
		{in: "[fd00::1]:80", want: Target{Kind: KindIP, Host: "fd00::1", Port: "80"}},
		{in: "svc/orders", want: Target{Kind: KindService, Namespace: "demo", Name: "orders"}},
		{in: "svc/orders:http", want: Target{Kind: KindService, Namespace: "demo", Name: "orders", Port: "http"}},
		{in: "service/orders.shop:80", want: Target{Kind: KindService, Namespace: "shop", Name: "orders", Port: "80"}},
		{in: "pod/orders-7d9c-x2x:8080", want: Target{Kind: KindPod, Namespace: "demo", Name: "orders-7d9c-x2x", Port: "8080"}},
		{in: "http://orders.shop/healthz?x=1", want: Target{Kind: KindName, Host: "orders.shop", Port: "80", Scheme: "http", Path: "/healthz?x=1"}},
		{in: "https://10.0.0.1", want: Target{Kind: KindIP, Host: "10.0.0.1", Port: "443", Scheme: "https", Path: "/"}},
		{in: "http://orders:8080", want: Target{Kind: KindName, Host: "orders", Port: "8080", Scheme: "http", Path: "/"}},

		{in: "", wantErr: "no destination"},
		{in: "pod/orders", wantErr: "needs a port"},
		{in: "deploy/orders", wantErr: "not deploy"},
		{in: "svc/Orders_1", wantErr: "not a Service name"},
		{in: "svc/orders:99999", wantErr: "out of range"},
		{in: "svc/orders:not_a_port!", wantErr: "neither a port number nor a port name"},
		{in: "orders:http", wantErr: "port \"http\" is not a number"},
		{in: "orders:0", wantErr: "out of range"},
		{in: "ftp://files", wantErr: "http:// and https://"},
		{in: "http://:80/", wantErr: "no host"},
		{in: "bad_name!", wantErr: "neither an address nor a DNS name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in, "demo")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrUser) {
					t.Fatalf("got %+v, %v; want a user error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Input = tt.in
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestServiceFromFQDN(t *testing.T) {
	tests := []struct {
		in, ns, name string
		ok           bool
	}{
		{"orders.demo.svc.cluster.local.", "demo", "orders", true},
		{"web-0.nginx.default.svc.cluster.local.", "default", "nginx", true},
		{"orders.demo.svc.", "demo", "orders", true},
		{"example.com.", "", "", false},
		{"svc.cluster.local.", "", "", false},
	}
	for _, tt := range tests {
		ns, name, ok := serviceFromFQDN(tt.in)
		if ns != tt.ns || name != tt.name || ok != tt.ok {
			t.Errorf("serviceFromFQDN(%q) = %q, %q, %v; want %q, %q, %v", tt.in, ns, name, ok, tt.ns, tt.name, tt.ok)
		}
	}
}
