//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestRunDNSCacheFollowsTheCluster: tether run's cache of DNS answers (the
// namespace mode) keeps CMD's view the pod's: a Service created after CMD
// failed to resolve it resolves once the negative answer's TTL is spent
// (CoreDNS's SOA in k3s: 5 s), and a Service deleted stops resolving once
// its records' TTL is spent (5 s).
func TestRunDNSCacheFollowsTheCluster(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	mark := func(s string) string { return filepath.Join(dir, s) }
	name := fmt.Sprintf("late.%s.svc.cluster.local.", e.ns)
	script := fmt.Sprintf(`name=%s
getent hosts $name && exit 3
touch %s
until getent hosts $name; do sleep 0.2; done
touch %s
while getent hosts $name >/dev/null; do sleep 0.2; done
touch %s`, name, mark("nx"), mark("resolved"), mark("gone"))
	cmd := exec.Command(tetherBinary(t), e.runArgs([]string{"run", "deploy/orders"}, []string{"--network", "namespace", "-q"}, "sh", "-c", script)...)
	cmd.Env = append(os.Environ(), e.tetherEnv()...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitMark := func(m, what string) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(2 * time.Minute) // not a figure under test: a hang
		for {
			if _, err := os.Stat(mark(m)); err == nil {
				return time.Since(start)
			}
			if cmd.ProcessState != nil || time.Now().After(deadline) {
				t.Fatalf("%s: not seen\nstdout: %s\nstderr: %s", what, stdout.String(), stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitMark("nx", "CMD's first lookup of late failing")

	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "orders"},
		Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("the Service created: CMD resolves it after %v", waitMark("resolved", "CMD resolving late after it was created"))

	if err := e.cs.CoreV1().Services(e.ns).Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("the Service deleted: CMD stops resolving it after %v", waitMark("gone", "CMD no longer resolving late after it was deleted"))
	if err := waitFor(t, cmd, time.Minute); err != nil {
		t.Errorf("tether run: %v\nstderr: %s", err, stderr.String())
	}
}
