package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/gateway"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/session"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// fakeCluster is namespace shop with deploy/orders journaled by an
// intercept, where the SelfSubjectAccessReviews allow everything but deny.
func fakeCluster(t *testing.T, deny access.Rule) (*Daemon, *fake.Clientset) {
	t.Helper()
	ctx := context.Background()
	orders := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "orders"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "orders"}}}}}}
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, orders)
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = !(ra.Verb == deny.Verb && ra.Group == deny.Group && ra.Resource == deny.Resource &&
			ra.Subresource == deny.Subresource && ra.Name == deny.Name)
		return true, r, nil
	})
	w := journal.Workload{Kind: "Deployment", Namespace: "shop", Name: "orders"}
	if _, err := (journal.Store{CS: cs}).Begin(ctx, &journal.Entry{Workload: w, Template: orders.Spec.Template,
		Secret: w.TokenSecretName(), CreatedAt: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
	return &Daemon{cs: cs, log: slog.New(slog.DiscardHandler), quit: make(chan struct{}),
		intercepts: map[string]*intercept.Intercept{}, starting: map[string]bool{}}, cs
}

// withSession starts a session in shop (an empty snapshot) and forgets
// the writes that took.
func withSession(t *testing.T, d *Daemon) {
	t.Helper()
	ctx := context.Background()
	st := session.Store{CS: d.cs}
	m := session.Meta{Name: "s", Namespace: "shop", Since: time.Unix(1, 0)}
	head, err := st.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, head, m, &session.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	d.cs.(*fake.Clientset).ClearActions()
}

// writes lists the changes made to the fake cluster, permission checks aside.
func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		if a.GetResource().Resource == "selfsubjectaccessreviews" {
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
	}
	return out
}

// TestFeaturesRefuseWithoutPermission: every feature that changes or reads
// the cluster checks its permissions first and, with one missing, refuses
// before any change, naming what is missing and the Role to ask for.
func TestFeaturesRefuseWithoutPermission(t *testing.T) {
	ctx := context.Background()
	nop := func(string) {}
	tests := []struct {
		name string
		deny access.Rule
		run  func(d *Daemon) error
		doc  string
	}{
		{"intercept", access.Rule{Verb: "update", Resource: "services"}, func(d *Daemon) error {
			_, err := d.Intercept(ctx, daemon.InterceptRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", LocalPort: 3000}, nop)
			return err
		}, "the Role in docs/intercept.md"},
		{"record", access.Rule{Verb: "create", Resource: "secrets"}, func(d *Daemon) error {
			_, err := d.Record(ctx, daemon.RecordRequest{Namespace: "shop", Workload: "orders", ServicePort: "http"}, nop)
			return err
		}, "the Role in docs/intercept.md"},
		{"rollback NAME", access.Rule{Verb: "delete", Resource: "configmaps", Name: "tether-journal-deployment-orders"}, func(d *Daemon) error {
			_, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: "shop", Workload: "orders"})
			return err
		}, "the Role in docs/intercept.md"},
		{"rollback NAME, the token", access.Rule{Verb: "delete", Resource: "secrets", Name: "tether-agent-deployment-orders"}, func(d *Daemon) error {
			_, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: "shop", Workload: "deploy/orders"})
			return err
		}, "the Role in docs/intercept.md"},
		{"rollback --all", access.Rule{Verb: "list", Resource: "configmaps"}, func(d *Daemon) error {
			_, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: "shop", All: true})
			return err
		}, "the Role in docs/intercept.md"},
		{"rollback --all, a journal's token", access.Rule{Verb: "delete", Resource: "secrets", Name: "tether-agent-deployment-orders"}, func(d *Daemon) error {
			_, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: "shop", All: true})
			return err
		}, "the Role in docs/intercept.md"},
		{"requests", access.Rule{Verb: "get", Resource: "secrets", Name: "tether-agent-deployment-orders"}, func(d *Daemon) error {
			_, err := d.Requests(ctx, daemon.RequestsRequest{Namespace: "shop", Workload: "orders"}, func(*recording.Exchange) error { return nil })
			return err
		}, "the Role in docs/intercept.md"},
		{"replay to the cluster", access.Rule{Verb: "create", Resource: "pods", Subresource: "portforward"}, func(d *Daemon) error {
			_, err := d.Replay(ctx, daemon.ReplayRequest{Namespace: "shop", Workload: "orders", To: "cluster",
				Exchanges: []*recording.Exchange{{ID: 1, Request: recording.Message{Method: "GET", Target: "/"}}}}, nil)
			return err
		}, "the Role in docs/intercept.md"},
		{"capture", access.Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers"}, func(d *Daemon) error {
			_, err := d.Capture(ctx, daemon.CaptureRequest{Namespace: "shop", Pod: "orders-1"}, nop, nil)
			return err
		}, "the tether-inspect Role in docs/intercept.md"},
		{"trace", access.Rule{Verb: "create", Resource: "secrets"}, func(d *Daemon) error {
			_, err := d.Trace(ctx, daemon.TraceRequest{Namespace: "shop", From: "orders-1", To: "orders:80"}, nop)
			return err
		}, "the tether-inspect Role in docs/intercept.md"},
		{"run", access.Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers"}, func(d *Daemon) error {
			addReadyPod(t, d)
			return d.Run(ctx, daemon.RunRequest{Namespace: "shop", Target: "deploy/orders"}, nop, func(daemon.RunInfo) {
				t.Error("the run started")
			})
		}, "the tether-inspect Role in docs/intercept.md"},
		{"run with no workload (the gateway)", access.Rule{Verb: "create", Group: "apps", Resource: "deployments"}, func(d *Daemon) error {
			return d.Run(ctx, daemon.RunRequest{Namespace: "shop"}, nop, func(daemon.RunInfo) { t.Error("the run started") })
		}, "the tether-run Role in docs/intercept.md"},
		{"rollback of the gateway", access.Rule{Verb: "delete", Group: "apps", Resource: "deployments", Name: "tether-gateway"}, func(d *Daemon) error {
			w := gateway.Workload("shop")
			if _, err := (journal.Store{CS: d.cs}).Begin(ctx, &journal.Entry{Workload: w, Gateway: true, CreatedAt: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
			d.cs.(*fake.Clientset).ClearActions()
			_, err := d.Rollback(ctx, daemon.RollbackRequest{Namespace: "shop", Workload: "deploy/tether-gateway"})
			return err
		}, "the tether-run Role in docs/intercept.md"},
		{"session start", access.Rule{Verb: "list", Group: "apps", Resource: "deployments"}, func(d *Daemon) error {
			_, err := d.SessionStart(ctx, daemon.SessionStartRequest{Namespace: "shop"})
			return err
		}, "the tether-session Role in docs/session.md"},
		{"session diff", access.Rule{Verb: "get", Resource: "secrets", Name: "tether-session-0"}, func(d *Daemon) error {
			withSession(t, d)
			_, err := d.SessionDiff(ctx, "shop")
			return err
		}, "the tether-session Role in docs/session.md"},
		{"session rollback", access.Rule{Verb: "delete", Group: "networking.k8s.io", Resource: "networkpolicies"}, func(d *Daemon) error {
			withSession(t, d)
			_, err := d.SessionRollback(ctx, daemon.SessionRollbackRequest{Namespace: "shop"}, nop)
			return err
		}, "the tether-session Role in docs/session.md"},
		{"session end", access.Rule{Verb: "delete", Resource: "secrets", Name: "tether-session"}, func(d *Daemon) error {
			withSession(t, d)
			_, err := d.SessionEnd(ctx, "shop")
			return err
		}, "the tether-session Role in docs/session.md"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, cs := fakeCluster(t, tt.deny)
			err := tt.run(d)
			if !errors.Is(err, errdefs.ErrUser) {
				t.Fatalf("got %v, want a user error", err)
			}
			for _, want := range []string{"missing:\n  - " + tt.deny.String() + " (to ", "ask your cluster admin for " + tt.doc} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			if w := writes(cs); len(w) > 0 {
				t.Errorf("changed the cluster before refusing: %v", w)
			}
		})
	}
}

// TestRollbackJournalGrantedByName: a Role that grants the journal by name
// (resourceNames) forbids reading the other kind's journal; `rollback NAME`
// takes that as "not that kind" and finds deploy/orders' journal. With
// neither kind's journal readable, the Forbidden is the answer.
func TestRollbackJournalGrantedByName(t *testing.T) {
	ctx := context.Background()
	forbidden := func(name string) k8stesting.ReactionFunc {
		return func(a k8stesting.Action) (bool, runtime.Object, error) {
			if g, ok := a.(k8stesting.GetAction); ok && (name == "" || g.GetName() == name) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, g.GetName(), errors.New("RBAC: denied"))
			}
			return false, nil, nil
		}
	}

	d, cs := fakeCluster(t, access.Rule{})
	cs.PrependReactor("get", "configmaps", forbidden("tether-journal-statefulset-orders"))
	e, err := d.journaledWorkload(ctx, "shop", "", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if want := (journal.Workload{Kind: "Deployment", Namespace: "shop", Name: "orders"}); e.Workload != want {
		t.Errorf("got %+v, want %+v", e.Workload, want)
	}
	if _, err := d.journaledWorkload(ctx, "shop", "StatefulSet", "orders"); !apierrors.IsForbidden(err) {
		t.Errorf("sts/orders, its journal forbidden: got %v, want the Forbidden", err)
	}

	d, cs = fakeCluster(t, access.Rule{})
	cs.PrependReactor("get", "configmaps", forbidden(""))
	if _, err := d.journaledWorkload(ctx, "shop", "", "orders"); !apierrors.IsForbidden(err) {
		t.Errorf("no journal readable: got %v, want the Forbidden", err)
	}
}
