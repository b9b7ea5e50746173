package intercept

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNotHTTP(t *testing.T) {
	ap := func(s string) *string { return &s }
	tests := []struct {
		port corev1.ServicePort
		want string
	}{
		{corev1.ServicePort{Name: "http", Port: 80}, ""},
		{corev1.ServicePort{Name: "web", Port: 8080}, ""},
		{corev1.ServicePort{Port: 8080}, ""},
		{corev1.ServicePort{Name: "grpc-api", Port: 9090, AppProtocol: ap("kubernetes.io/h2c")}, ""},
		{corev1.ServicePort{Name: "db", Port: 5432, AppProtocol: ap("postgresql")}, "has appProtocol postgresql"},
		{corev1.ServicePort{Name: "tcp-stream", Port: 9000}, "is named tcp-stream"},
		{corev1.ServicePort{Name: "https", Port: 443}, "is named https"},
		{corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, "is UDP"},
		{corev1.ServicePort{Name: "http-metrics", Port: 80, AppProtocol: ap("HTTP")}, ""},
	}
	for _, tt := range tests {
		if got := notHTTP(tt.port); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.port, got, tt.want)
		}
	}
}
