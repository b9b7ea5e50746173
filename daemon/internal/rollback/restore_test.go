package rollback_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/internal/errdefs"
)

// TestRestore rolls back a journaled intercept from the states a cluster
// can be in, and checks the steps reported, the writes sent and the objects
// left.
func TestRestore(t *testing.T) {
	var (
		tmplStep   = rollback.Step{Object: "deployment/orders", Action: rollback.Restored}
		svcStep    = rollback.Step{Object: "service/orders", Action: rollback.Restored}
		secretStep = rollback.Step{Object: "secret/tether-agent-deployment-orders", Action: rollback.Deleted}
		jStep      = rollback.Step{Object: "configmap/" + orders.ConfigMapName(), Action: rollback.Deleted}
		jWrites    = []string{"delete configmaps/" + orders.ConfigMapName(), "delete secrets/" + orders.KeySecretName()}
	)
	with := func(s rollback.Step, action, reason string) rollback.Step {
		s.Action, s.Reason = action, reason
		return s
	}
	cat := func(a ...[]string) []string {
		var out []string
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		change     func(t *testing.T, c *intercepted) // before the rollback
		force      bool
		wantSteps  []rollback.Step
		wantWrites []string
		wantTmpl   string // image of the app container after
	}{
		{
			name:      "untouched since tether",
			wantSteps: []rollback.Step{tmplStep, svcStep, secretStep, jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders",
				"delete secrets/tether-agent-deployment-orders"}, jWrites),
			wantTmpl: "orders:v1",
		},
		{
			name: "rerun of an interrupted rollback",
			change: func(t *testing.T, c *intercepted) {
				setTemplate(t, c.cs, c.original) // the first run restored the template, then died
			},
			wantSteps:  []rollback.Step{with(tmplStep, rollback.Unchanged, ""), svcStep, secretStep, jStep},
			wantWrites: cat([]string{"update services/orders", "delete secrets/tether-agent-deployment-orders"}, jWrites),
			wantTmpl:   "orders:v1",
		},
		{
			name: "a conflict on the service update is retried",
			change: func(t *testing.T, c *intercepted) {
				n := 0
				c.cs.PrependReactor("update", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
					if n++; n == 1 {
						return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "orders", errors.New("modified"))
					}
					return false, nil, nil
				})
			},
			wantSteps: []rollback.Step{tmplStep, svcStep, secretStep, jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders", "update services/orders",
				"delete secrets/tether-agent-deployment-orders"}, jWrites),
			wantTmpl: "orders:v1",
		},
		{
			name: "force restores a template changed since",
			change: func(t *testing.T, c *intercepted) {
				tm := c.applied.DeepCopy()
				tm.Spec.Containers[0].Image = "orders:v2"
				setTemplate(t, c.cs, *tm)
			},
			force:     true,
			wantSteps: []rollback.Step{tmplStep, svcStep, secretStep, jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders",
				"delete secrets/tether-agent-deployment-orders"}, jWrites),
			wantTmpl: "orders:v1",
		},
		{
			name: "service ports changed since are refused, the rest restored",
			change: func(t *testing.T, c *intercepted) {
				s, _ := c.cs.CoreV1().Services(ns).Get(context.Background(), "orders", metav1.GetOptions{})
				s.Spec.Ports[0].Port = 8080
				if _, err := c.cs.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			wantSteps: []rollback.Step{tmplStep,
				with(svcStep, rollback.Refused, "its ports changed since tether changed them; rerun with --force to restore them anyway"),
				secretStep, with(jStep, rollback.Kept, "service/orders is not restored yet")},
			wantWrites: []string{"update deployments/orders", "delete secrets/tether-agent-deployment-orders"},
			wantTmpl:   "orders:v1",
		},
		{
			name: "a secret of that name that tether did not create is kept",
			change: func(t *testing.T, c *intercepted) {
				ctx := context.Background()
				_ = c.cs.CoreV1().Secrets(ns).Delete(ctx, "tether-agent-deployment-orders", metav1.DeleteOptions{})
				_, err := c.cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
					Name: "tether-agent-deployment-orders", Labels: map[string]string{journal.LabelAgentToken: "true"}}}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			},
			wantSteps: []rollback.Step{tmplStep, svcStep,
				with(secretStep, rollback.Kept, "not the secret tether created (label or UID differ); delete it yourself if it is a leftover"), jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders"}, jWrites),
			wantTmpl:   "orders:v1",
		},
		{
			name:      "the daemon died before journaling the secret's UID: the nonce journaled before tells it",
			change:    func(t *testing.T, c *intercepted) { secretByNonce(t, c, "n1", "n1") },
			wantSteps: []rollback.Step{tmplStep, svcStep, secretStep, jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders",
				"delete secrets/tether-agent-deployment-orders"}, jWrites),
			wantTmpl: "orders:v1",
		},
		{
			name:   "no UID journaled and another nonce: kept",
			change: func(t *testing.T, c *intercepted) { secretByNonce(t, c, "n1", "n2") },
			wantSteps: []rollback.Step{tmplStep, svcStep,
				with(secretStep, rollback.Kept, "not the secret tether created (label or UID differ); delete it yourself if it is a leftover"), jStep},
			wantWrites: cat([]string{"update deployments/orders", "update services/orders"}, jWrites),
			wantTmpl:   "orders:v1",
		},
		{
			name: "objects gone",
			change: func(t *testing.T, c *intercepted) {
				ctx := context.Background()
				_ = c.cs.AppsV1().Deployments(ns).Delete(ctx, "orders", metav1.DeleteOptions{})
				_ = c.cs.CoreV1().Services(ns).Delete(ctx, "orders", metav1.DeleteOptions{})
				_ = c.cs.CoreV1().Secrets(ns).Delete(ctx, "tether-agent-deployment-orders", metav1.DeleteOptions{})
			},
			wantSteps: []rollback.Step{with(tmplStep, rollback.Absent, ""), with(svcStep, rollback.Absent, ""),
				with(secretStep, rollback.Absent, ""), jStep},
			wantWrites: jWrites,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t)
			if tc.change != nil {
				tc.change(t, c)
			}
			c.cs.ClearActions()
			steps, err := rollback.Restore(context.Background(), c.cs, orders, tc.force)
			refused := false
			for _, s := range tc.wantSteps {
				refused = refused || s.Action == rollback.Refused
			}
			if refused != errors.Is(err, rollback.ErrChangedSince) || (!refused && err != nil) {
				t.Errorf("Restore: err = %v, want a refusal: %v", err, refused)
			}
			if diff := cmp.Diff(tc.wantSteps, steps); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWrites, fakekube.Writes(c.cs)); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if tc.wantTmpl != "" {
				if got := template(t, c.cs).Spec.Containers[0].Image; got != tc.wantTmpl {
					t.Errorf("image after rollback = %s, want %s", got, tc.wantTmpl)
				}
			}
			if refused {
				return
			}
			// Nothing left to roll back.
			if _, err := rollback.Restore(context.Background(), c.cs, orders, false); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("second Restore: err = %v, want not found", err)
			}
		})
	}
}

func setTemplate(t *testing.T, cs *fake.Clientset, tm corev1.PodTemplateSpec) {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template = tm
	if _, err := cs.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// secretByNonce makes the journal name the token Secret by nonce only (as
// a daemon killed between creating it and journaling its UID leaves it),
// and the Secret carry has.
func secretByNonce(t *testing.T, c *intercepted, nonce, has string) {
	t.Helper()
	ctx := context.Background()
	_, err := journal.Store{CS: c.cs}.Update(ctx, orders, func(e *journal.Entry) error {
		e.SecretUID, e.SecretNonce = "", nonce
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := c.cs.CoreV1().Secrets(ns).Get(ctx, "tether-agent-deployment-orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Annotations = map[string]string{journal.AnnotationCreatedFor: has}
	if _, err := c.cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
