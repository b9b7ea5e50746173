package rollback_test

import (
	"context"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
)

// TestRestorePin rolls back an intercept that stopped during a pinned
// rollout (journal.Pin): the Service's selector held to one ReplicaSet's
// pods and the Deployment's settings that keep the old pods go back first,
// each only if it is still what tether set, or with force.
func TestRestorePin(t *testing.T) {
	surge, none := intstr.FromString("100%"), intstr.FromInt32(0)
	deadline := int32(1 << 30)
	held := journal.RolloutSettings{
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &none}},
		MinReadySeconds: deadline - 1, ProgressDeadlineSeconds: &deadline,
	}
	selStep := rollback.Step{Object: "service/orders selector", Action: rollback.Restored}
	setStep := rollback.Step{Object: "deployment/orders rollout settings", Action: rollback.Restored}
	for _, tc := range []struct {
		name      string
		selector  map[string]string // the Service's, before the rollback
		settings  func(d *appsv1.Deployment)
		force     bool
		wantSteps []rollback.Step // the pin's
		wantSel   map[string]string
		wantMin   int32
		wantKept  bool // the journal stays
	}{
		{
			name:      "held to the old pods",
			selector:  map[string]string{"app": "orders", "pod-template-hash": "old"},
			wantSteps: []rollback.Step{selStep, setStep},
			wantSel:   map[string]string{"app": "orders"},
		},
		{
			name:      "switched to the new pods",
			selector:  map[string]string{"app": "orders", "pod-template-hash": "new"},
			wantSteps: []rollback.Step{selStep, setStep},
			wantSel:   map[string]string{"app": "orders"},
		},
		{
			name:     "stopped before either change",
			selector: map[string]string{"app": "orders"},
			settings: func(d *appsv1.Deployment) { (&journal.Pin{}).Rollout.Apply(d) },
			wantSteps: []rollback.Step{{Object: selStep.Object, Action: rollback.Unchanged},
				{Object: setStep.Object, Action: rollback.Unchanged}},
			wantSel: map[string]string{"app": "orders"},
		},
		{
			name:     "selector changed by someone",
			selector: map[string]string{"app": "orders", "pod-template-hash": "old", "team": "blue"},
			wantSteps: []rollback.Step{{Object: selStep.Object, Action: rollback.Refused,
				Reason: "its selector changed since tether held it to one ReplicaSet's pods by pod-template-hash; rerun with --force to restore it anyway"}, setStep},
			wantSel:  map[string]string{"app": "orders", "pod-template-hash": "old", "team": "blue"},
			wantKept: true,
		},
		{
			name:      "selector changed by someone, forced",
			selector:  map[string]string{"app": "orders", "pod-template-hash": "old", "team": "blue"},
			force:     true,
			wantSteps: []rollback.Step{selStep, setStep},
			wantSel:   map[string]string{"app": "orders"},
		},
		{
			name:     "settings changed by someone",
			selector: map[string]string{"app": "orders", "pod-template-hash": "old"},
			settings: func(d *appsv1.Deployment) { held.Apply(d); d.Spec.MinReadySeconds = 7 },
			wantSteps: []rollback.Step{selStep, {Object: setStep.Object, Action: rollback.Refused,
				Reason: "its strategy, minReadySeconds or progressDeadlineSeconds changed since tether set them; rerun with --force to restore them anyway"}},
			wantSel:  map[string]string{"app": "orders"},
			wantMin:  7,
			wantKept: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := setup(t)
			d, err := c.cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			orig := journal.SettingsOf(d)
			if tc.settings != nil {
				tc.settings(d)
			} else {
				held.Apply(d)
			}
			if _, err := c.cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			svc, err := c.cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			origSel := maps.Clone(svc.Spec.Selector)
			svc.Spec.Selector = tc.selector
			if _, err := c.cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err = journal.Store{CS: c.cs}.Update(ctx, orders, func(e *journal.Entry) error {
				e.Pin = &journal.Pin{Service: "orders", Selector: origSel, Label: "pod-template-hash", Rollout: orig, AppliedRolloutHash: journal.Hash(held)}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			steps, err := rollback.Restore(ctx, c.cs, orders, tc.force)
			if (err != nil) != tc.wantKept {
				t.Fatalf("err %v, want an error: %v", err, tc.wantKept)
			}
			if len(steps) < 2 {
				t.Fatalf("steps %+v", steps)
			}
			if diff := cmp.Diff(tc.wantSteps, steps[:2]); diff != "" {
				t.Errorf("the pin's steps (-want +got):\n%s", diff)
			}
			svc, _ = c.cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
			if diff := cmp.Diff(tc.wantSel, svc.Spec.Selector); diff != "" {
				t.Errorf("selector (-want +got):\n%s", diff)
			}
			d, _ = c.cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
			if tc.wantMin != 0 {
				if d.Spec.MinReadySeconds != tc.wantMin {
					t.Errorf("minReadySeconds %d, want %d (left as someone set it)", d.Spec.MinReadySeconds, tc.wantMin)
				}
			} else if diff := cmp.Diff(orig, journal.SettingsOf(d)); diff != "" {
				t.Errorf("rollout settings not restored (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.original, template(t, c.cs)); diff != "" {
				t.Errorf("template not restored (-want +got):\n%s", diff)
			}
			e, err := journal.Store{CS: c.cs}.Load(ctx, orders)
			if err != nil {
				t.Fatal(err)
			}
			if (e != nil) != tc.wantKept {
				t.Errorf("journal kept: %v, want %v", e != nil, tc.wantKept)
			}
		})
	}
}
