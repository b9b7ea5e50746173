//go:build integration

package integration

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/tetherkube/tether/integration/demoapp"
)

// TestReproduce: the demo's failing checkout, recorded once, is sent 10
// times to the cluster by `tether reproduce` and fails 10 of 10 (exit 3);
// sent 10 times to the fixed code on this machine, it fails 0 of 10
// (exit 0); an --expect on the JSON answer counts the same way.
func TestReproduce(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http")
	base := "http://orders." + e.ns + ".svc.cluster.local"
	e.exec(client, "/tether-demo", "post", base+"/orders/42/checkout", `{"coupon":"HALFOFF"}`)
	e.exec(client, "/tether-demo", "get", base+"/orders/7")

	// The fixed code, as a developer runs it after the fix.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := demoapp.NewServer("laptop")
	fixed.Fixed = true
	srv := &http.Server{Handler: fixed.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	local := "local:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)

	type tally struct {
		Recurred, Answers int
		Requests          []struct {
			Target            string
			Recurred, Answers int
		}
	}
	reproduce := func(args ...string) (tally, int) {
		t.Helper()
		args = append(append([]string{"reproduce", "orders"}, args...), "-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns)
		out, stderr, code := e.tether(args...)
		var got tally
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("tether %v: exit %d, not JSON: %v\n%s\n%s", args, code, err, out, stderr)
		}
		return got, code
	}
	got, code := reproduce("--status", "5xx", "--to", "cluster", "--count", "10")
	if code != 3 || got.Recurred != 10 || got.Answers != 10 || len(got.Requests) != 1 || got.Requests[0].Target != "/orders/42/checkout" {
		t.Errorf("against the cluster: exit %d, %+v; want exit 3 and the checkout failing 10 of 10", code, got)
	}
	got, code = reproduce("--status", "5xx", "--to", local, "--count", "10")
	if code != 0 || got.Recurred != 0 || got.Answers != 10 {
		t.Errorf("against the fix: exit %d, %+v; want exit 0, 0 of 10", code, got)
	}
	got, code = reproduce("--path", "/orders/42", "--to", "cluster", "--count", "10", "--expect", "status=500", "--expect", "json:$.error")
	if code != 3 || got.Recurred != 10 {
		t.Errorf("--expect status and JSON field, against the cluster: exit %d, %+v; want 10 of 10", code, got)
	}
	got, code = reproduce("--path", "/orders/42", "--to", local, "--count", "10", "--expect", "json:$.total=17.5")
	if code != 3 || got.Recurred != 10 {
		// The fixed code's total for order 42 is what this expects: the
		// count must follow the answer, whatever the status.
		t.Errorf("--expect on the fixed answer's total: exit %d, %+v; want 10 of 10", code, got)
	}
	// Bad input: exit 2, nothing sent.
	_, stderr, code := e.tether("reproduce", "orders", "--to", "cluster", "--expect", "latency>soon", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 {
		t.Errorf("a bad --expect: exit %d (%s), want 2", code, stderr)
	}
}
