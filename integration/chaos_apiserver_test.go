//go:build integration

package integration

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/integration/cluster"
)

// TestChaosAPIServerRestart promises: when k3s (its API server, and with
// it the kubelet and kube-proxy) is restarted under an intercept, the
// daemon's tunnels, which ran through the API server's port-forward, are
// re-established within 5 s after the API server answers again, and no
// request that arrives after that is lost. The pods run on meanwhile, as
// they do when a control plane restarts.
//
// It restarts the shared cluster: it runs in the fault suite, which runs
// its tests one at a time after the integration tests.
func TestChaosAPIServerRestart(t *testing.T) {
	rounds := int(envInt(t, "TETHER_CHAOS_RESTARTS", 3))
	cfg := cluster.DefaultConfig(filepath.Join(repoRoot(), ".cluster"))
	e := newEnv(t)
	e.deployOrders(1)
	dep, err := e.cs.AppsV1().Deployments(e.ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A restarted kubelet reports every pod with a readiness probe unready
	// until the probe passes again (CoreDNS's Ready condition flips too),
	// so a Service of one such pod refuses connections for a few seconds
	// after the restart, tether or not. Without the probe the pod stays
	// ready, and what is measured is tether's own recovery.
	for i := range dep.Spec.Template.Spec.Containers {
		dep.Spec.Template.Spec.Containers[i].ReadinessProbe = nil
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Update(context.Background(), dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAppRoutes(1)
	client := e.clientPod("client")
	// CoreDNS has a readiness probe, so for the same reason its Service
	// refuses lookups for a moment after each restart (CI once lost a
	// request to "lookup ... on 10.43.0.10:53: connection refused"). The
	// requests go to the Service's ClusterIP; the cluster's DNS is
	// checked on its own after the rounds.
	svc, err := e.cs.CoreV1().Services(e.ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))) + "/whoami"
	served := func() string { return e.servedByURL(client, url) }
	before := e.snapshot()
	port := laptop(t)
	e.mustTether("intercept", "deploy/orders", "--port", "http:"+strconv.Itoa(port), "--path", "port-forward")
	e.wantPaths("port-forward")
	e.requireAll(client, "laptop", 3)
	pid := e.daemonPID()
	var within5s, failedAfter, after int
	var slowest, slowestDown, slowestAfterKubelet time.Duration
	for i := range rounds {
		stopAt := time.Now()
		back, err := cluster.Restart(context.Background(), cfg)
		if err != nil {
			t.Fatalf("round %d: restart k3s: %v", i+1, err)
		}
		down := back.Sub(stopAt)
		slowestDown = max(slowestDown, down)
		// Requests go from the client pod through exec, which needs the
		// restarted kubelet too: the first that runs tells when the node
		// serves streams (port-forwards) again.
		var kubelet time.Duration
		get := func() string {
			got := served()
			if kubelet == 0 && got != "failed: " {
				kubelet = time.Since(back)
			}
			return got
		}
		took, others, ok := until(get, "laptop", back, 60*time.Second, 50*time.Millisecond)
		if !ok {
			t.Fatalf("round %d: requests never reached the laptop again within 60 s of the API server's return; they got %q", i+1, others)
		}
		if took <= 5*time.Second {
			within5s++
		}
		slowest = max(slowest, took)
		slowestAfterKubelet = max(slowestAfterKubelet, took-kubelet)
		failedAfter += e.lostAfter(served, "laptop", i+1, 20)
		after += 20
		if p := e.daemonPID(); p != pid {
			t.Fatalf("round %d: the daemon changed (pid %d -> %d)", i+1, pid, p)
		}
		e.wantPaths("port-forward")
		t.Logf("round %d/%d: API server away %v; the laptop served again %v after it answered, %v after the node ran execs again (before: %s)",
			i+1, rounds, down.Round(time.Millisecond), took.Round(time.Millisecond), (took - kubelet).Round(time.Millisecond), strings.Join(others, "; "))
	}
	dns := e.waitServiceDNS(client, "dns-after-restarts")
	e.mustTether("rollback", "deploy/orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
	t.Logf("chaos: k3s (API server, kubelet, kube-proxy) restarted under an intercept: %d/%d tunnels back within 5 s of the API server answering (slowest %v, %v after the node served execs again; the API server was away up to %v), %d requests lost after they were back (of %d); the cluster's DNS resolved a new Service %v after it was created",
		within5s, rounds, slowest.Round(time.Millisecond), slowestAfterKubelet.Round(time.Millisecond), slowestDown.Round(time.Millisecond), failedAfter, after, dns.Round(time.Millisecond))
}

// waitServiceDNS creates a Service named name and waits until the client
// pod resolves it, returning how long that took. After an API server
// restart CoreDNS learns new Services only once its watch is back, and
// client-go backs its retries off: after five restarts in 30 s it took
// 16 s here. The tests that follow create Services and call them by name.
func (e *env) waitServiceDNS(client, name string) time.Duration {
	e.t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create service %s: %v", name, err)
	}
	start := time.Now()
	fqdn := name + "." + e.ns + ".svc.cluster.local"
	for {
		out, ok := e.exec(client, "/tether-demo", "lookup", fqdn)
		if ok && strings.Contains(out, "->") {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			e.t.Fatalf("the cluster's DNS did not resolve the new Service %s within 2 min: %s", fqdn, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
