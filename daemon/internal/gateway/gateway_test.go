package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/internal/errdefs"
)

const ns = "shop"

// leftovers lists every object left in ns.
func leftovers(t *testing.T, cs *fake.Clientset) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	cms, _ := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, o := range cms.Items {
		out = append(out, "configmap/"+o.Name)
	}
	ss, _ := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range ss.Items {
		out = append(out, "secret/"+o.Name)
	}
	ds, _ := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	for _, o := range ds.Items {
		out = append(out, "deployment/"+o.Name)
	}
	return out
}

// TestEnsureFailureLeavesNothing: a gateway that cannot be created leaves
// no journal, key, token or Deployment behind.
func TestEnsureFailureLeavesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(cs *fake.Clientset)
	}{
		{"deployment refused", func(cs *fake.Clientset) {
			cs.PrependReactor("create", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, errors.New("admission webhook said no")
			})
		}},
		// Nothing runs pods in a fake cluster: the wait times out.
		{"pod never runs", func(*fake.Clientset) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs := fakekube.New(fakekube.Namespace(ns))
			tt.fail(cs)
			_, err := Ensure(context.Background(), cs, Request{Namespace: ns, AgentImage: "agent:dev", Timeout: 500 * time.Millisecond}, func(string) {})
			if err == nil {
				t.Fatal("Ensure succeeded")
			}
			if left := leftovers(t, cs); len(left) > 0 {
				t.Errorf("left behind after %v: %v", err, left)
			}
		})
	}
}

func TestEnsureUnknownNamespace(t *testing.T) {
	cs := fakekube.New()
	_, err := Ensure(context.Background(), cs, Request{Namespace: "nope", AgentImage: "agent:dev"}, func(string) {})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), `no namespace "nope"`) {
		t.Fatalf("err = %v, want a user error naming the namespace", err)
	}
}

// made journals and creates a gateway as create does, without waiting for
// its pod.
func made(t *testing.T, cs *fake.Clientset, mutate func(*journal.Entry)) {
	t.Helper()
	ctx := context.Background()
	store := journal.Store{CS: cs}
	w := Workload(ns)
	if _, err := store.Begin(ctx, &journal.Entry{Workload: w, Gateway: true, Secret: w.TokenSecretName()}); err != nil {
		t.Fatal(err)
	}
	s, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: w.TokenSecretName(),
		Labels: map[string]string{journal.LabelAgentToken: "true"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(Request{Namespace: ns, AgentImage: "agent:dev"}, w.TokenSecretName()), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, w, func(e *journal.Entry) error {
		e.SecretUID, e.GatewayUID = s.UID, d.UID
		mutate(e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackDeletesGateway: `tether rollback deployment/tether-gateway`
// deletes the gateway, its token and its journal; a Deployment of that
// name that is not the journaled one is refused and kept.
func TestRollbackDeletesGateway(t *testing.T) {
	ctx := context.Background()
	t.Run("journaled gateway", func(t *testing.T) {
		cs := fakekube.New(fakekube.Namespace(ns))
		made(t, cs, func(*journal.Entry) {})
		steps, err := rollback.Restore(ctx, cs, Workload(ns), false)
		if err != nil {
			t.Fatal(err)
		}
		want := []rollback.Step{
			{Object: "deployment/" + Name, Action: rollback.Deleted},
			{Object: "secret/tether-agent-deployment-" + Name, Action: rollback.Deleted},
			{Object: "configmap/tether-journal-deployment-" + Name, Action: rollback.Deleted},
		}
		if diff := cmp.Diff(want, steps); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		if left := leftovers(t, cs); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
	t.Run("another deployment of that name", func(t *testing.T) {
		cs := fakekube.New(fakekube.Namespace(ns))
		made(t, cs, func(e *journal.Entry) { e.GatewayUID = "someone-elses" })
		steps, err := rollback.Restore(ctx, cs, Workload(ns), false)
		if !errors.Is(err, rollback.ErrChangedSince) {
			t.Fatalf("err = %v, want a refusal", err)
		}
		if steps[0].Action != rollback.Refused {
			t.Errorf("first step %+v, want the deployment refused", steps[0])
		}
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, Name, metav1.GetOptions{}); err != nil {
			t.Errorf("the deployment that is not the journaled one was deleted: %v", err)
		}
	})
}
