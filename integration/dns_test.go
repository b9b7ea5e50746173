//go:build integration

package integration

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestDNSViewSeesLookups: `tether dns` sees the lookups made inside the
// pod, with the right rcodes and answers, and the search-list storm of a
// name that does not exist.
func TestDNSViewSeesLookups(t *testing.T) {
	e := newEnvLevel(t, "baseline")
	_, svc := e.deployOrders(1)
	pod := e.firstPod("orders")
	wait, stdout := e.startCapturing("dns", pod, "--duration", "10s", "-o", "json")
	fqdn := "orders." + e.ns + ".svc.cluster.local"
	if out, ok := e.exec(pod, "/tether-demo", "lookup", fqdn); !ok {
		t.Fatalf("lookup failed: %s", out)
	}
	if out, ok := e.exec(pod, "/tether-demo", "lookup", "no-such-svc"); ok {
		t.Fatalf("lookup of a missing name succeeded: %s", out)
	}
	if code, log := wait(); code != 0 {
		t.Fatalf("tether dns exited %d:\n%s", code, log)
	}
	type exchange struct {
		Name, Type, Rcode string
		Answered          bool
		Answers           []string
		Storm             int
	}
	var got []exchange
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	for {
		var ex exchange
		if err := dec.Decode(&ex); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("-o json output: %v\n%s", err, stdout)
		}
		got = append(got, ex)
	}
	var resolved, nx bool
	for _, ex := range got {
		if ex.Name == fqdn && ex.Type == "A" && ex.Rcode == "No Error" && len(ex.Answers) == 1 && ex.Answers[0] == svc.Spec.ClusterIP {
			resolved = true
		}
		if ex.Name == "no-such-svc."+e.ns+".svc.cluster.local" && ex.Rcode == "Non-Existent Domain" {
			nx = true
		}
	}
	if !resolved || !nx {
		t.Errorf("resolved %v, NXDOMAIN seen %v; exchanges:\n%s", resolved, nx, stdout)
	}
}
