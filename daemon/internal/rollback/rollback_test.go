package rollback_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
)

const ns = "shop"

var orders = journal.Workload{Kind: "Deployment", Namespace: ns, Name: "orders"}

// intercepted is a cluster where tether put the agent in front of
// service/orders port grpc (numeric targetPort, so the Service was
// retargeted), journaled as tether does it.
type intercepted struct {
	cs         *fake.Clientset
	original   corev1.PodTemplateSpec
	applied    corev1.PodTemplateSpec
	svcPorts   []corev1.ServicePort // original
	agentPorts []corev1.ServicePort
}

func setup(t *testing.T, extra ...*corev1.Secret) *intercepted {
	t.Helper()
	ctx := context.Background()
	orig := fakekube.Template("orders", "orders:v1")
	svc := fakekube.Service(ns, "orders")
	plan, err := inject.Build(&orig, svc, inject.PortRef{Name: "grpc"}, inject.Options{AgentImage: "agent:v1", SecretName: "tether-agent-deployment-orders"})
	if err != nil {
		t.Fatal(err)
	}
	cur := svc.DeepCopy()
	cur.Spec.Ports = plan.Service.Spec.Ports
	objs := []runtimeObject{fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", plan.Template), cur,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tether-agent-deployment-orders", Labels: map[string]string{"tether.dev/agent-token": "true"}}}}
	for _, s := range extra {
		objs = append(objs, s)
	}
	cs := fakekube.New(objs...)
	writeJournal(t, ctx, cs, orig, svc.Spec.Ports, plan)
	cs.ClearActions()
	return &intercepted{cs: cs, original: orig, applied: plan.Template, svcPorts: svc.Spec.Ports, agentPorts: plan.Service.Spec.Ports}
}

// editJournal changes the journal's JSON as someone with kubectl edit
// would, leaving everything else in the ConfigMap as it is.
func editJournal(t *testing.T, cs *fake.Clientset, edit func(e map[string]any)) {
	t.Helper()
	ctx := context.Background()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, orders.ConfigMapName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(cm.Data["journal.json"]), &e); err != nil {
		t.Fatal(err)
	}
	edit(e)
	b, _ := json.Marshal(e)
	cm.Data["journal.json"] = string(b)
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
}

func template(t *testing.T, cs *fake.Clientset) corev1.PodTemplateSpec {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template
}

func servicePorts(t *testing.T, cs *fake.Clientset) []corev1.ServicePort {
	t.Helper()
	s, err := cs.CoreV1().Services(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Spec.Ports
}

// Finding 4: an edited journal (empty hash, another template, an unrelated
// Secret) must not make a plain rollback apply it.
func TestRestoreRefusesEditedJournal(t *testing.T) {
	evil := fakekube.Template("orders", "evil:latest")
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-credentials"}}
	for _, tc := range []struct {
		name string
		edit func(e map[string]any)
	}{
		{"empty hash and another template", func(e map[string]any) {
			e["appliedTemplateHash"] = ""
			e["template"] = evil
		}},
		{"unrelated secret", func(e map[string]any) { e["secret"] = "db-credentials" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t, creds)
			editJournal(t, c.cs, tc.edit)
			_, err := rollback.Restore(context.Background(), c.cs, orders, false)
			if err == nil || !strings.Contains(err.Error(), orders.ConfigMapName()) {
				t.Fatalf("Restore of an edited journal: err = %v, want a refusal naming the journal", err)
			}
			if diff := cmp.Diff([]string(nil), fakekube.Writes(c.cs)); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.applied, template(t, c.cs)); diff != "" {
				t.Errorf("template (-want +got):\n%s", diff)
			}
			if _, err := c.cs.CoreV1().Secrets(ns).Get(context.Background(), "db-credentials", metav1.GetOptions{}); err != nil {
				t.Errorf("unrelated secret: %v", err)
			}
		})
	}
}

// Finding 5: a template someone changed since tether must not keep the
// Service pointed at the agent: the Service is restored on its own merits.
func TestRestoreServiceWhenTemplateChanged(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	d, _ := c.cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
	d.Spec.Template.Spec.Containers[0].Image = "orders:v2" // a teammate's rollout
	if _, err := c.cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := d.Spec.Template
	c.cs.ClearActions()

	steps, err := rollback.Restore(ctx, c.cs, orders, false)
	if err == nil {
		t.Fatal("Restore: no error, want the template refused")
	}
	wantSteps := []rollback.Step{
		{Object: "deployment/orders", Action: "refused", Reason: "its pod template changed since tether changed it (someone edited it or rolled it out); rerun with --force to restore the template tether journaled anyway"},
		{Object: "service/orders", Action: "restored"},
		{Object: "secret/tether-agent-deployment-orders", Action: "kept", Reason: "the pod template still mounts it"},
		{Object: "configmap/" + orders.ConfigMapName(), Action: "kept", Reason: "deployment/orders is not restored yet"},
	}
	if diff := cmp.Diff(wantSteps, steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c.svcPorts, servicePorts(t, c.cs)); diff != "" {
		t.Errorf("service ports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(changed, template(t, c.cs)); diff != "" {
		t.Errorf("template (-want +got):\n%s", diff)
	}
}
