//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestReproduceCountsBeforeAndAfterTheFix is issue 14's reproduce: the
// recorded failing checkout, saved, sent 10 times into the cluster fails
// 10/10 against the failing demo code (exit 3) and 0/10 once the fix is
// deployed (exit 0).
func TestReproduceCountsBeforeAndAfterTheFix(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether(agentImage("record", "orders", "--port", "http")...)
	base := "http://orders." + e.ns + ".svc.cluster.local"
	e.exec(client, "/tether-demo", "get", base+"/orders/7")
	e.exec(client, "/tether-demo", "post", base+"/orders/42/checkout", `{"coupon":"HALFOFF"}`)
	file := filepath.Join(t.TempDir(), "failing.json")
	e.mustTether("requests", "save", "orders", file, "--status", "5xx")

	reproduce := func() (report struct{ Rounds, Reproduced int }, code int) {
		t.Helper()
		out, stderr, code := e.tether("reproduce", "orders", "--from", file, "--to", "cluster", "--count", "10",
			"--expect", "status=500", "--expect", "json:.error=pricing: no discount rule for coupon \"HALFOFF\"",
			"-o", "json", "--kubeconfig", e.kubeconfig, "-n", e.ns)
		if err := json.Unmarshal([]byte(out), &report); err != nil {
			t.Fatalf("reproduce -o json: %v\nstdout %s\nstderr %s", err, out, stderr)
		}
		return report, code
	}
	rep, code := reproduce()
	if code != 3 || rep.Rounds != 10 || rep.Reproduced != 10 {
		t.Errorf("against the failing code: exit %d, %d of %d rounds; want exit 3, 10 of 10", code, rep.Reproduced, rep.Rounds)
	}

	// The fix, deployed.
	e.editTemplate(func(tmpl *corev1.PodTemplateSpec) {
		for i, c := range tmpl.Spec.Containers {
			if c.Name == "orders" {
				tmpl.Spec.Containers[i].Env = append(c.Env, corev1.EnvVar{Name: "DEMO_FIXED", Value: "1"})
			}
		}
	})
	e.waitAvailable("orders", 1)
	e.waitOnlyPods("orders", 1)
	rep, code = reproduce()
	if code != 0 || rep.Rounds != 10 || rep.Reproduced != 0 {
		t.Errorf("after the fix: exit %d, %d of %d rounds; want exit 0, 0 of 10", code, rep.Reproduced, rep.Rounds)
	}

	// Bad input: exit 2.
	for _, args := range [][]string{
		{"reproduce", "orders", "--from", file, "--to", "cluster"},
		{"reproduce", "orders", "--from", file, "--to", "cluster", "--expect", "status=abc"},
		{"reproduce", "--from", filepath.Join(t.TempDir(), "missing.json"), "--to", "http://127.0.0.1:1", "--expect", "error"},
	} {
		_, stderr, code := e.tether(append(args, "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
		if code != 2 {
			t.Errorf("tether %s: exit %d, want 2; stderr %s", strings.Join(args, " "), code, stderr)
		}
	}
	_ = os.Remove(file)
}

// waitOnlyPods waits until app's pods are exactly n, none of them
// terminating, and kube-proxy has had the time to follow.
func (e *env) waitOnlyPods(app string, n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil || len(pods.Items) != n {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("app=%s does not have exactly %d running pods: %v", app, n, err)
	}
	time.Sleep(2 * time.Second) // kube-proxy follows endpoint changes within about a second
}
