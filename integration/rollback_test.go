//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// editTemplate changes the orders pod template as someone else would.
func (e *env) editTemplate(edit func(*corev1.PodTemplateSpec)) {
	e.t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(&d.Spec.Template)
		_, err = e.cs.AppsV1().Deployments(e.ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestRollbackRefusesOthersChangesUnlessForced: after someone else changed
// the template tether changed, rollback refuses and changes nothing;
// --force restores the journaled original.
func TestRollbackRefusesOthersChangesUnlessForced(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)))
	e.mustTether("leave", "orders")
	e.editTemplate(func(tmpl *corev1.PodTemplateSpec) {
		tmpl.Spec.Containers[0].Env = append(tmpl.Spec.Containers[0].Env, corev1.EnvVar{Name: "EDITED_BY", Value: "someone"})
	})
	edited := e.snapshot()

	_, stderr, code := e.tether("rollback", "orders", "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 || !strings.Contains(stderr, "changed since tether changed it") || !strings.Contains(stderr, "--force") {
		t.Errorf("rollback of an edited workload: exit %d, stderr:\n%s\nwant exit 2 naming the change and --force", code, stderr)
	}
	if after := e.snapshot(); !equalTemplates(edited, after) {
		t.Errorf("the refused rollback changed the workload")
	}

	e.mustTether("rollback", "orders", "--force")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

func equalTemplates(a, b snapshot) bool {
	ja, _ := json.Marshal(a.template)
	jb, _ := json.Marshal(b.template)
	return string(ja) == string(jb)
}

// TestRollbackFinishesAnInterruptedOne: a rollback that died after
// restoring the template and deleting the token Secret, but before removing
// the journal, is finished by running rollback again.
func TestRollbackFinishesAnInterruptedOne(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)))
	e.mustTether("quit") // the laptop goes away; the journal stays in the cluster

	// The first half of a rollback, done by hand from the journal.
	ctx := context.Background()
	cm, err := e.cs.CoreV1().ConfigMaps(e.ns).Get(ctx, "tether-journal-deployment-orders", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no journal in the cluster: %v", err)
	}
	var entry struct {
		Template corev1.PodTemplateSpec `json:"template"`
	}
	if err := json.Unmarshal([]byte(cm.Data["journal.json"]), &entry); err != nil {
		t.Fatal(err)
	}
	e.editTemplate(func(tmpl *corev1.PodTemplateSpec) { *tmpl = entry.Template })
	if err := e.cs.CoreV1().Secrets(e.ns).Delete(ctx, "tether-agent-deployment-orders", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	out := e.mustTether("rollback", "--all")
	for _, want := range []string{"unchanged  deployment/orders", "absent     secret/tether-agent-deployment-orders", "deleted    configmap/tether-journal-deployment-orders"} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback output lacks %q:\n%s", want, out)
		}
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)
	if out := e.mustTether("rollback", "--all"); !strings.Contains(out, "Nothing to roll back") {
		t.Errorf("a second rollback --all: %s", out)
	}
}
