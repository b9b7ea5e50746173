package intercept

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
)

// asider is an agent that steps aside, or refuses with err.
type asider struct {
	mu    sync.Mutex
	err   error
	calls []bool // each call's back
	hook  func() // runs on each stepping aside, before the answer
}

func (a *asider) StepAside(_ context.Context, back bool) error {
	a.mu.Lock()
	a.calls = append(a.calls, back)
	hook, err := a.hook, a.err
	a.mu.Unlock()
	if back {
		return nil
	}
	if hook != nil {
		hook()
	}
	return err
}

func (a *asider) backs() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, b := range a.calls {
		if b {
			n++
		}
	}
	return n
}

// sidecarOn returns a cluster where orders runs the agent in front of
// service port ref (a sidecar intercept that ended), journaled, with the
// Service as the intercept left it.
func sidecarOn(t *testing.T, ref string) (*fake.Clientset, *corev1.Service) {
	t.Helper()
	tmpl := fakekube.Template("orders", "shop:1")
	svc := fakekube.Service(ns, "orders")
	port, err := inject.ParsePortRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := inject.Build(&tmpl, svc, port, inject.Options{AgentImage: "tether-agent:test", SecretName: "tether-agent-deployment-orders"})
	if err != nil {
		t.Fatal(err)
	}
	stored := svc
	if plan.Service != nil {
		stored = plan.Service
	}
	cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", plan.Template), stored)
	seedJournal(t, cs, tmpl, plan.Template)
	if plan.Service != nil {
		_, err := journal.Store{CS: cs}.Update(context.Background(), orders, func(e *journal.Entry) error {
			e.Services = map[string]journal.ServiceEntry{"orders": {Ports: svc.Spec.Ports, AppliedPortsHash: journal.Hash(plan.Service.Spec.Ports)}}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return cs, svc
}

// TestStepAsideAndBack: idle agents step aside, the Service port that
// reached them by name or by number goes to the app's port, journaled
// first; the next intercept's plan sees the Service pointed at the agents
// again, and pointing it back marks it; rollback restores the Service as
// it was before any intercept, mark removed, from either form.
func TestStepAsideAndBack(t *testing.T) {
	for _, tc := range []struct {
		ref     string
		appPort int32
	}{{"web", 8080}, {"grpc", 9090}} {
		t.Run(tc.ref, func(t *testing.T) {
			ctx := context.Background()
			cs, orig := sidecarOn(t, tc.ref)
			m := &Manager{CS: cs}
			before := getPorts(t, cs)
			a, b := &asider{}, &asider{}
			changed, err := m.StepAside(ctx, orders, map[string]Asider{"orders-1": a, "orders-2": b})
			if err != nil || !cmp.Equal(changed, []string{"orders"}) {
				t.Fatalf("StepAside = %v, %v; want [orders]", changed, err)
			}
			if a.backs() != 0 || len(a.calls) != 1 || len(b.calls) != 1 {
				t.Errorf("agents asked %v and %v, want one stepping aside each", a.calls, b.calls)
			}
			aside := getPorts(t, cs)
			for i, p := range aside {
				want := before[i].TargetPort
				if p.Name == tc.ref {
					want = intstr.FromInt32(tc.appPort)
				}
				if p.TargetPort != want {
					t.Errorf("aside, port %s targets %s, want %s", p.Name, p.TargetPort.String(), want.String())
				}
			}
			se := loadJournal(t, cs).Services["orders"]
			if se.AsidePortsHash != journal.Hash(aside) || !cmp.Equal(se.AsideFrom, before) || !cmp.Equal(se.Ports, orig.Spec.Ports) {
				t.Errorf("journal after stepping aside: %+v", se)
			}
			// Nothing more to step aside.
			if changed, err := m.StepAside(ctx, orders, map[string]Asider{"orders-1": a}); err != nil || len(changed) != 0 {
				t.Errorf("second StepAside = %v, %v; want nothing", changed, err)
			}

			svc, err := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			back, err := m.asideBack(ctx, orders, svc)
			if err != nil || back == nil {
				t.Fatalf("asideBack = %v, %v; want the Service pointed at the agents", back, err)
			}
			tmpl := getTemplate(t, cs)
			port, _ := inject.ParsePortRef(tc.ref)
			if plan, err := inject.Build(&tmpl, back, port, inject.Options{AgentImage: "tether-agent:test"}); err != nil || !plan.Existing {
				t.Fatalf("plan on the Service pointed back: existing %v, %v", plan.Existing, err)
			}
			if _, err := m.pointBack(ctx, orders, back, func(string) {}); err != nil {
				t.Fatal(err)
			}
			if got := getPorts(t, cs); !cmp.Equal(got, before) {
				t.Errorf("pointed back, ports %v, want %v", got, before)
			}
			if se := loadJournal(t, cs).Services["orders"]; se.AsidePortsHash != "" || se.AsideFrom != nil {
				t.Errorf("journal still says aside: %+v", se)
			}

			// Aside again, then rolled back from there.
			a2 := &asider{}
			if _, err := m.StepAside(ctx, orders, map[string]Asider{"orders-1": a2}); err != nil {
				t.Fatal(err)
			}
			if _, err := rollback.Restore(ctx, cs, orders, false); err != nil {
				t.Fatal(err)
			}
			got, err := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !cmp.Equal(got.Spec.Ports, orig.Spec.Ports) || got.Annotations[journal.AnnotationBack] != "" {
				t.Errorf("rolled back from aside: ports %v (want %v), annotations %v", got.Spec.Ports, orig.Spec.Ports, got.Annotations)
			}
		})
	}
}

// TestStepAsideRefused: an agent that refuses (in use) leaves the Service
// as it is, and the agents that agreed are told back.
func TestStepAsideRefused(t *testing.T) {
	ctx := context.Background()
	cs, _ := sidecarOn(t, "grpc")
	before := getPorts(t, cs)
	ok := &asider{}
	busy := &asider{err: fmt.Errorf("port 7400 is intercepted by ana: %w", agent.ErrBusy)}
	m := &Manager{CS: cs}
	// Map order is random: the agreeing agent is asked first or not at all.
	_, err := m.StepAside(ctx, orders, map[string]Asider{"orders-1": ok, "orders-2": busy})
	if !errors.Is(err, ErrAgentsBusy) {
		t.Fatalf("StepAside with a busy agent: %v, want ErrAgentsBusy", err)
	}
	if len(ok.calls) > 0 && ok.backs() != 1 {
		t.Errorf("the agent that stepped aside was not told back: %v", ok.calls)
	}
	if got := getPorts(t, cs); !cmp.Equal(got, before) {
		t.Errorf("ports changed: %v", got)
	}
}

// TestStepAsideLosesToAnIntercept: another daemon brings an agent back
// (and marks the Service) while the agents step aside; the update,
// conditional on the version read before, fails, the Service stays
// pointed at the agents, and the agents are told back.
func TestStepAsideLosesToAnIntercept(t *testing.T) {
	ctx := context.Background()
	cs, _ := sidecarOn(t, "grpc")
	before := getPorts(t, cs)
	// The fake clientset does not check versions: the update the other
	// daemon made fails this one, as the API server would.
	marked := false
	cs.PrependReactor("update", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if marked {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "orders", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	a := &asider{hook: func() { marked = true }}
	m := &Manager{CS: cs}
	if _, err := m.StepAside(ctx, orders, map[string]Asider{"orders-1": a}); !apierrors.IsConflict(err) {
		t.Fatalf("StepAside after another's mark: %v, want a conflict", err)
	}
	if a.backs() != 1 {
		t.Errorf("agent not told back: %v", a.calls)
	}
	if got := getPorts(t, cs); !cmp.Equal(got, before) {
		t.Errorf("ports changed: %v", got)
	}
}
