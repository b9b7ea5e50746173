//go:build integration

package integration

import (
	"strings"
	"testing"
)

// TestOutsideNamesAnswered: a name outside the cluster gets NXDOMAIN from
// the local cluster's resolver (no upstream can be reached), as an
// isolated cluster's would, rather than a SERVFAIL after timing out; and a
// cluster name still resolves.
func TestOutsideNamesAnswered(t *testing.T) {
	e := newEnv(t)
	client := e.clientPod("client")
	out, ok := e.exec(client, "/tether-demo", "lookup", "example.invalid")
	if ok || !strings.Contains(out, "no such host") {
		t.Errorf("lookup example.invalid: ok=%v %s; want NXDOMAIN (no such host)", ok, out)
	}
	// A TXT-style name as grpc-go asks for it, outside every search domain.
	out, ok = e.exec(client, "/tether-demo", "lookup", "_grpc_config.orders")
	if ok || !strings.Contains(out, "no such host") {
		t.Errorf("lookup _grpc_config.orders: ok=%v %s; want NXDOMAIN (no such host)", ok, out)
	}
	if out, ok := e.exec(client, "/tether-demo", "lookup", "kubernetes.default"); !ok {
		t.Errorf("lookup kubernetes.default: %s", out)
	}
}
