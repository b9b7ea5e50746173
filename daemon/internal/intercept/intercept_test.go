package intercept

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

const ns = "shop"

var orders = journal.Workload{Kind: "Deployment", Namespace: ns, Name: "orders"}

func getTemplate(t *testing.T, cs *fake.Clientset) corev1.PodTemplateSpec {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template
}

func getPorts(t *testing.T, cs *fake.Clientset) []corev1.ServicePort {
	t.Helper()
	s, err := cs.CoreV1().Services(ns).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Spec.Ports
}

// writesTo keeps the writes to one resource.
func writesTo(cs *fake.Clientset, resource string) []string {
	var out []string
	for _, w := range fakekube.Writes(cs) {
		if strings.Contains(w, " "+resource+"/") {
			out = append(out, w)
		}
	}
	return out
}

// failNth makes the nth update of resource fail with err.
func failNth(cs *fake.Clientset, resource string, n int, err error) {
	count := 0
	cs.PrependReactor("update", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fakekube.DryRun(a) {
			return false, nil, nil
		}
		count++
		if count == n {
			return true, nil, err
		}
		return false, nil, nil
	})
}

// Finding 3: an intercept that fails after Begin returned an older journal
// (an agent left by leave) must undo only its own change, never force the
// old journal's original back: a teammate's image and the agent in use stay.
func TestFailedStartUndoesOnlyItsOwnChange(t *testing.T) {
	orig := fakekube.Template("orders", "orders:v1")
	svc := fakekube.Service(ns, "orders")
	left, err := inject.Build(&orig, svc, inject.PortRef{Name: "web"}, inject.Options{AgentImage: "agent:v1", SecretName: "tether-agent-deployment-orders"})
	if err != nil {
		t.Fatal(err)
	}
	teammates := *left.Template.DeepCopy()
	teammates.Spec.Containers[0].Image = "orders:v2" // a rollout since tether's change
	for _, tc := range []struct {
		name       string
		current    corev1.PodTemplateSpec
		failUpdate string // the first update of this resource fails
		wantErr    string
		wantWrites []string // to the deployment
	}{
		{"template changed since the journal", teammates, "", "changed since tether changed it", nil},
		{"template update fails", left.Template, "deployments", "etcd timeout", []string{"update deployments/orders"}},
		// The template was changed and rolled out: undone to the template
		// with the earlier agent, not to the journal's original.
		{"service update fails", left.Template, "services", "etcd timeout",
			[]string{"update deployments/orders", "update deployments/orders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", tc.current), svc)
			seedJournal(t, cs, orig, left.Template)
			wantJournal := loadJournal(t, cs)
			cs.ClearActions()
			simulateRollout(cs)
			if tc.failUpdate != "" {
				failNth(cs, tc.failUpdate, 1, apierrors.NewInternalError(errors.New("etcd timeout")))
			}

			m := &Manager{CS: cs}
			_, err = m.Start(ctx, Request{Namespace: ns, Workload: "orders", ServicePort: "grpc", AgentImage: "agent:v1", RecordOnly: true, RolloutTimeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start: err = %v, want %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.current, getTemplate(t, cs)); diff != "" {
				t.Errorf("template (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(svc.Spec.Ports, getPorts(t, cs)); diff != "" {
				t.Errorf("service ports (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWrites, writesTo(cs, "deployments")); diff != "" {
				t.Errorf("deployment writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), writesTo(cs, "secrets")); diff != "" {
				t.Errorf("secret writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantJournal, loadJournal(t, cs), cmpopts.IgnoreUnexported(journal.Entry{})); diff != "" {
				t.Errorf("journal (-want +got):\n%s", diff)
			}
		})
	}
}

// Finding 13: retargeting a Service must not overwrite a change made since
// tether read it (another daemon retargeting another port).
func TestRetargetDoesNotOverwriteOthers(t *testing.T) {
	ctx := context.Background()
	svc := fakekube.Service(ns, "orders")
	cs := fakekube.New(svc)
	stale, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})

	// Another daemon retargets port web in the meantime.
	other := stale.DeepCopy()
	other.Spec.Ports[0].TargetPort.StrVal = "other-agent"
	if _, err := cs.CoreV1().Services(ns).Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mine := stale.DeepCopy()
	mine.Spec.Ports[1].TargetPort.IntVal = 17000
	_, err := retargetCall(ctx, cs, stale.Spec.Ports, mine.Spec.Ports)
	got := getPorts(t, cs)
	if err == nil {
		// Applying only this change on top of the other is fine too.
		want := other.Spec.Ports
		want[1].TargetPort.IntVal = 17000
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("service ports (-want +got):\n%s", diff)
		}
		return
	}
	if diff := cmp.Diff(other.Spec.Ports, got); diff != "" {
		t.Errorf("service ports after a refused retarget (-want +got):\n%s", diff)
	}
}

// TestStartTakesTheResolvedWorkload: a workload the caller already resolved
// (the daemon does, for its access check) is not looked up again.
func TestStartTakesTheResolvedWorkload(t *testing.T) {
	cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", fakekube.Template("orders", "orders:v1")), fakekube.Service(ns, "orders"))
	simulateRollout(cs)
	w := journal.Workload{Namespace: ns, Kind: "Deployment", Name: "orders"}
	if _, err := (&Manager{CS: cs, Settle: time.Millisecond}).Start(context.Background(), Request{Namespace: ns, Workload: "orders", Resolved: w,
		ServicePort: "grpc", AgentImage: "agent:v1", RecordOnly: true, RolloutTimeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "namespaces" {
			t.Fatalf("Start looked the workload up again (%s %s)", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

// TestCheckChangesNothing: Check refuses what Start would refuse before
// its first change (a mirror on a port declared not HTTP) and, refusing or
// not, writes nothing.
func TestCheckChangesNothing(t *testing.T) {
	svc := fakekube.Service(ns, "orders")
	svc.Spec.Ports[1].Name = "tcp-raw"
	cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", fakekube.Template("orders", "orders:v1")), svc)
	m := &Manager{CS: cs}
	req := Request{Namespace: ns, Workload: "orders", ServicePort: "tcp-raw", LocalPort: 1, LocalPortLater: true,
		AgentImage: "agent:v1", Mirror: true}
	err := m.Check(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "port 90 (tcp-raw) is named tcp-raw: tether filters and mirrors only cleartext HTTP") {
		t.Fatalf("Check(mirror of tcp-raw) = %v, want the port refused", err)
	}
	req.ServicePort = "web"
	if err := m.Check(context.Background(), req); err != nil {
		t.Fatalf("Check(mirror of web) = %v", err)
	}
	if w := fakekube.Writes(cs); len(w) != 0 {
		t.Errorf("Check wrote %v", w)
	}
}
