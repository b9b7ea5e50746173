//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/integration/cluster"
)

// TestServiceResolvesAndAnswersFromAPod proves the cluster's DNS and Service
// routing: a client pod resolves the orders Service by its full name through
// CoreDNS (and by its short name through the search list) and gets answers
// from both replicas.
func TestServiceResolvesAndAnswersFromAPod(t *testing.T) {
	e := newEnv(t)
	_, svc := e.deployOrders(2)
	fqdn := fmt.Sprintf("orders.%s.svc.cluster.local", e.ns)

	type result struct {
		name, logs string
		ok         bool
	}
	jobs := map[string][]string{
		"lookup-fqdn":  {"lookup", fqdn},
		"lookup-short": {"lookup", "orders"},
		"get-order":    {"get", "http://" + fqdn + "/orders/7"},
		"get-nxdomain": {"lookup", "no-such-service." + e.ns + ".svc.cluster.local"},
	}
	results := make(chan result, len(jobs))
	var wg sync.WaitGroup
	for name, args := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs, ok := e.runPod(name, args...)
			results <- result{name, logs, ok}
		}()
	}
	wg.Wait()
	close(results)
	got := map[string]result{}
	for r := range results {
		got[r.name] = r
	}

	for _, name := range []string{"lookup-fqdn", "lookup-short"} {
		r := got[name]
		if !r.ok || !strings.Contains(r.logs, svc.Spec.ClusterIP) {
			t.Errorf("%s: ok=%v, logs %q do not name the ClusterIP %s", name, r.ok, r.logs, svc.Spec.ClusterIP)
		}
	}
	if r := got["get-order"]; !r.ok || !strings.Contains(r.logs, "200 OK") || !strings.Contains(r.logs, `"item": "grinder"`) ||
		!strings.Contains(r.logs, "X-Served-By: orders-") {
		t.Errorf("get-order: ok=%v logs:\n%s", r.ok, r.logs)
	}
	if r := got["get-nxdomain"]; r.ok || !strings.Contains(r.logs, "no such host") {
		t.Errorf("lookup of a missing name: ok=%v logs %q, want a failure with 'no such host'", r.ok, r.logs)
	}
}

// TestPortForwardReachesOrders reaches a pod from the test process through
// client-go's port-forward, the path tether's tunnel takes, and checks that
// requests and an 8 MiB upload arrive intact.
func TestPortForwardReachesOrders(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	pod := e.firstPod("orders")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr, stop, err := cluster.ForwardPort(ctx, e.rc, e.ns, pod, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := &http.Client{Timeout: 30 * time.Second}

	resp, err := client.Get("http://" + addr + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	var who map[string]string
	json.NewDecoder(resp.Body).Decode(&who)
	resp.Body.Close()
	if who["name"] != pod {
		t.Errorf("whoami = %q, want the pod %q", who["name"], pod)
	}

	body := make([]byte, 8<<20)
	rand.Read(body)
	sum := sha256.Sum256(body)
	resp, err = client.Post("http://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var up struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if up.Bytes != int64(len(body)) || up.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("upload arrived as %d bytes sha256 %s, want %d bytes %x", up.Bytes, up.SHA256, len(body), sum)
	}

	resp, err = client.Get("http://" + addr + "/bytes?n=4194304")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 4<<20 {
		t.Errorf("download: %d bytes, err %v; want 4194304", n, err)
	}
}

// TestNetworkPolicyEnforced: the local cluster enforces NetworkPolicy (k3s's
// embedded controller on the bridge CNI), which tether's path inspection
// relies on to compare its verdicts with what the cluster does.
func TestNetworkPolicyEnforced(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	url := "http://orders." + e.ns + ".svc.cluster.local/whoami"
	if out, ok := e.exec(client, "/tether-demo", "get", url); !ok {
		t.Fatalf("before any policy the request fails: %s", out)
	}
	ctx := context.Background()
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-orders"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if _, err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	blocked := false
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(500 * time.Millisecond) {
		if _, ok := e.exec(client, "/tether-demo", "get", url); !ok {
			blocked = true
			break
		}
	}
	if !blocked {
		t.Fatal("a deny-all ingress policy never blocked the request")
	}
	if err := e.cs.NetworkingV1().NetworkPolicies(e.ns).Delete(ctx, "deny-orders", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(500 * time.Millisecond) {
		if _, ok := e.exec(client, "/tether-demo", "get", url); ok {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the request stayed blocked after the policy was deleted")
		}
	}
}
