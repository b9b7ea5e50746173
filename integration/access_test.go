//go:build integration

package integration

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestRoleWithJournalByName: a user whose Role grants the journal ConfigMap
// by name (resourceNames) records deploy/orders and rolls it back with
// `rollback orders`, which once stopped at the Forbidden statefulset
// journal. Without the tether-inspect Role the same user's trace is refused
// before any inspection agent is added, naming what is missing.
func TestRoleWithJournalByName(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	role := documentedRoles(t)["tether-user"]
	if role == nil {
		t.Fatal("docs/intercept.md has no Role tether-user")
	}
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "configmaps") {
			continue
		}
		rules = append(rules, r)
	}
	role.Rules = append(rules,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "create"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update", "delete"},
			ResourceNames: []string{"tether-journal-deployment-orders"}})
	kc := e.userWithRoles("dev", role)
	as := func(args ...string) (string, string, int) {
		t.Helper()
		return runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, append(args, "--kubeconfig", kc, "-n", e.ns)...)
	}

	if _, stderr, code := as(agentImage("record", "orders", "--port", "http")...); code != 0 {
		t.Fatalf("record exited %d:\n%s", code, stderr)
	}
	if _, stderr, code := as("rollback", "orders"); code != 0 {
		t.Fatalf("rollback orders with the journal granted by name exited %d:\n%s", code, stderr)
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)

	_, stderr, code := as(agentImage("trace", "pod/"+client, "svc/orders")...)
	if code != 2 {
		t.Errorf("trace without the inspect Role exited %d, want 2:\n%s", code, stderr)
	}
	for _, want := range []string{"you may not do everything trace needs", "update pods/ephemeralcontainers", "the tether-inspect Role in docs/intercept.md"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("trace's refusal does not say %q:\n%s", want, stderr)
		}
	}
	if got := e.inspectContainers(client); len(got) > 0 {
		t.Errorf("trace added inspection agents before refusing: %v", got)
	}
}
