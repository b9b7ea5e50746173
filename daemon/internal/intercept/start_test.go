package intercept

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
)

// simulateRollout makes cs act like a cluster whose controllers finish
// every rollout at once: deployment/orders reports its rollout done, pod
// orders-0 runs its current template (every container ready), and
// service/orders' EndpointSlice names that pod ready.
func simulateRollout(cs *fake.Clientset) {
	deployments := appsv1.SchemeGroupVersion.WithResource("deployments")
	current := func() *appsv1.Deployment {
		o, err := cs.Tracker().Get(deployments, ns, "orders")
		if err != nil {
			return nil
		}
		d := o.(*appsv1.Deployment).DeepCopy()
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		return d
	}
	pod := func() *corev1.Pod {
		d := current()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-0", Labels: d.Spec.Template.Labels},
			Spec:       d.Spec.Template.Spec,
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Ready: true})
		}
		return p
	}
	cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if d := current(); d != nil && a.(k8stesting.GetAction).GetName() == "orders" {
			return true, d, nil
		}
		return false, nil, nil
	})
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &corev1.PodList{Items: []corev1.Pod{*pod()}}, nil
	})
	cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, pod(), nil
	})
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		yes := true
		return true, &discoveryv1.EndpointSliceList{Items: []discoveryv1.EndpointSlice{{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-x", Labels: map[string]string{discoveryv1.LabelServiceName: "orders"}},
			Endpoints: []discoveryv1.Endpoint{{
				Conditions: discoveryv1.EndpointConditions{Ready: &yes},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "orders-0"},
			}},
		}}}, nil
	})
}

var grpcRequest = Request{Namespace: ns, Workload: "orders", ServicePort: "grpc", AgentImage: "agent:v1", RecordOnly: true, RolloutTimeout: 5 * time.Second}

// ordersRollingOut is a fake cluster with deployment/orders, whose
// rollouts complete, and its Service; orig is the deployment's template.
func ordersRollingOut() (*fake.Clientset, corev1.PodTemplateSpec, *corev1.Service) {
	orig := fakekube.Template("orders", "orders:v1")
	svc := fakekube.Service(ns, "orders")
	cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", orig), svc)
	simulateRollout(cs)
	return cs, orig, svc
}

// planFor is the change tether makes for port on the fixtures.
func planFor(t *testing.T, port string) inject.Plan {
	t.Helper()
	orig := fakekube.Template("orders", "orders:v1")
	p, err := inject.Build(&orig, fakekube.Service(ns, "orders"), inject.PortRef{Name: port},
		inject.Options{AgentImage: "agent:v1", SecretName: "tether-agent-deployment-orders"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func token(t *testing.T, cs *fake.Clientset) (string, *corev1.Secret) {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), "tether-agent-deployment-orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Data[inject.TokenKey]), s
}

// TestStart runs intercepts against a fake cluster and checks the objects
// and the journal they leave, on success and on each failure path.
func TestStart(t *testing.T) {
	orig := fakekube.Template("orders", "orders:v1")
	svc := fakekube.Service(ns, "orders")
	plan := planFor(t, "grpc")
	tetherSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tether-agent-deployment-orders", Labels: map[string]string{journal.LabelAgentToken: "true"}},
		Data:       map[string][]byte{inject.TokenKey: []byte("stale")},
	}
	foreignSecret := tetherSecret.DeepCopy()
	foreignSecret.Labels = nil
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "orders", errors.New("modified"))

	for _, tc := range []struct {
		name    string
		extra   []runtime.Object
		setup   func(cs *fake.Clientset)
		wantErr string
		// wantChanged: the template and Service end as planned (else as
		// they were), with a journal.
		wantChanged bool
		wantWrites  []string // to deployments and services
	}{
		{name: "fresh intercept", wantChanged: true,
			wantWrites: []string{"update deployments/orders", "update services/orders"}},
		{name: "leftover token secret gets a fresh token", extra: []runtime.Object{tetherSecret}, wantChanged: true,
			wantWrites: []string{"update deployments/orders", "update services/orders"}},
		{name: "a conflict on the service update is retried", wantChanged: true,
			setup:      func(cs *fake.Clientset) { failNth(cs, "services", 1, conflict) },
			wantWrites: []string{"update deployments/orders", "update services/orders", "update services/orders"}},
		{name: "a secret of that name that is not tether's", extra: []runtime.Object{foreignSecret},
			wantErr: "is not tether's"},
		{name: "service changed during the rollout", wantErr: "service ports changed meanwhile",
			setup: func(cs *fake.Clientset) {
				// Someone edits the Service while the agent rolls out.
				cs.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if fakekube.DryRun(a) {
						return false, nil, nil
					}
					s, _ := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("services"), ns, "orders")
					s = s.DeepCopyObject()
					s.(*corev1.Service).Spec.Ports[0].Port = 8080
					_ = cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("services"), s, ns)
					return false, nil, nil
				})
			},
			wantWrites: []string{"update deployments/orders", "update deployments/orders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			cs := fakekube.New(append([]runtime.Object{fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", orig), svc}, tc.extra...)...)
			simulateRollout(cs)
			if tc.setup != nil {
				tc.setup(cs)
			}
			m := &Manager{CS: cs, Settle: time.Millisecond}
			_, err := m.Start(ctx, grpcRequest)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Start: err = %v, want %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantWrites, append(writesTo(cs, "deployments"), writesTo(cs, "services")...)); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			j := loadJournal(t, cs)
			if !tc.wantChanged {
				if diff := cmp.Diff(orig, getTemplate(t, cs)); diff != "" {
					t.Errorf("template after a failed start (-want +got):\n%s", diff)
				}
				if j != nil {
					t.Errorf("journal left after a failed start: %+v", j)
				}
				keys, _ := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: journal.LabelJournalKey})
				if len(keys.Items) != 0 {
					t.Errorf("journal key left after a failed start")
				}
				return
			}
			if diff := cmp.Diff(plan.Template, getTemplate(t, cs)); diff != "" {
				t.Errorf("template (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(plan.Service.Spec.Ports, getPorts(t, cs)); diff != "" {
				t.Errorf("service ports (-want +got):\n%s", diff)
			}
			tok, sec := token(t, cs)
			if tok == "stale" || len(tok) != 64 {
				t.Errorf("token %q, want a fresh one", tok)
			}
			want := &journal.Entry{
				Workload: orders, Template: orig, AppliedTemplateHash: journal.Hash(plan.Template),
				Services: map[string]journal.ServiceEntry{"orders": {Ports: svc.Spec.Ports, AppliedPortsHash: journal.Hash(plan.Service.Spec.Ports)}},
				Secret:   "tether-agent-deployment-orders", SecretUID: sec.UID,
				// The nonce the Secret was created with, journaled before.
				SecretNonce: sec.Annotations[journal.AnnotationCreatedFor],
			}
			if want.SecretNonce == "" {
				t.Errorf("secret annotations %v: no %s nonce", sec.Annotations, journal.AnnotationCreatedFor)
			}
			if diff := cmp.Diff(want, j, cmpopts.IgnoreUnexported(journal.Entry{}), cmpopts.IgnoreFields(journal.Entry{}, "CreatedAt", "By")); diff != "" {
				t.Errorf("journal (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStartRace has two intercepts of one port race: one adds the agent,
// the other finds it (and reuses it or refuses); the cluster holds one
// agent, the journal describes one change, and a rollback restores
// everything.
func TestStartRace(t *testing.T) {
	ctx := context.Background()
	cs, orig, svc := ordersRollingOut()
	plan := planFor(t, "grpc")

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &Manager{CS: cs, Settle: time.Millisecond}
			_, errs[i] = m.Start(ctx, grpcRequest)
		}()
	}
	wg.Wait()
	// The loser either reuses the winner's agent, or (when it plans again
	// before the winner retargeted the Service) refuses; it never undoes
	// the winner's change.
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), "already goes through tether's agent"):
			t.Errorf("Start: %v", err)
		}
	}
	if ok == 0 {
		t.Fatalf("no intercept won: %v", errs)
	}
	if diff := cmp.Diff(plan.Template, getTemplate(t, cs)); diff != "" {
		t.Errorf("template: want one agent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(plan.Service.Spec.Ports, getPorts(t, cs)); diff != "" {
		t.Errorf("service ports (-want +got):\n%s", diff)
	}
	steps, err := rollback.Restore(ctx, cs, orders, false)
	if err != nil {
		t.Fatalf("rollback after the race: %v (steps %+v)", err, steps)
	}
	if diff := cmp.Diff(orig, getTemplate(t, cs)); diff != "" {
		t.Errorf("template after rollback (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(svc.Spec.Ports, getPorts(t, cs)); diff != "" {
		t.Errorf("service ports after rollback (-want +got):\n%s", diff)
	}
}

// TestRerunAfterCrash: an intercept that died between writing its journal
// (and token Secret) and changing the template is finished by a rerun, or
// rolled back cleanly.
func TestRerunAfterCrash(t *testing.T) {
	orig := fakekube.Template("orders", "orders:v1")
	svc := fakekube.Service(ns, "orders")
	crashed := func(t *testing.T) *fake.Clientset {
		ctx := context.Background()
		cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", orig), svc)
		simulateRollout(cs)
		s := journal.Store{CS: cs}
		if _, err := s.Begin(ctx, &journal.Entry{Workload: orders, Template: orig}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Update(ctx, orders, func(e *journal.Entry) error {
			e.Services = map[string]journal.ServiceEntry{"orders": {Ports: svc.Spec.Ports}}
			e.Secret = "tether-agent-deployment-orders"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "tether-agent-deployment-orders", Labels: map[string]string{journal.LabelAgentToken: "true"}},
			Data:       map[string][]byte{inject.TokenKey: []byte("before-crash")},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	t.Run("rerun finishes", func(t *testing.T) {
		cs := crashed(t)
		if _, err := (&Manager{CS: cs, Settle: time.Millisecond}).Start(context.Background(), grpcRequest); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(planFor(t, "grpc").Template, getTemplate(t, cs)); diff != "" {
			t.Errorf("template (-want +got):\n%s", diff)
		}
		if tok, _ := token(t, cs); tok == "before-crash" {
			t.Errorf("the new agent got the token written before the crash")
		}
	})
	t.Run("rollback cleans up", func(t *testing.T) {
		cs := crashed(t)
		steps, err := rollback.Restore(context.Background(), cs, orders, false)
		if err != nil {
			t.Fatal(err)
		}
		want := []rollback.Step{
			{Object: "deployment/orders", Action: rollback.Unchanged},
			{Object: "service/orders", Action: rollback.Unchanged},
			{Object: "secret/tether-agent-deployment-orders", Action: rollback.Kept, Reason: "not the secret tether created (label or UID differ); delete it yourself if it is a leftover"},
			{Object: "configmap/" + orders.ConfigMapName(), Action: rollback.Deleted},
		}
		if diff := cmp.Diff(want, steps); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"delete configmaps/" + orders.ConfigMapName(), "delete secrets/" + orders.KeySecretName()},
			fakekube.Writes(cs)[len(fakekube.Writes(cs))-2:]); diff != "" {
			t.Errorf("last writes (-want +got):\n%s", diff)
		}
	})
}

// TestFailedStartNeverForces: when the undo finds the template changed
// since this attempt changed it (a teammate's rollout), it leaves it, keeps
// the journal so `tether rollback` can decide, and says so.
func TestFailedStartNeverForces(t *testing.T) {
	ctx := context.Background()
	cs, _, svc := ordersRollingOut()
	deployments := appsv1.SchemeGroupVersion.WithResource("deployments")
	var teammates corev1.PodTemplateSpec
	cs.PrependReactor("update", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		// A teammate rolls out a new image, then the retarget fails.
		o, _ := cs.Tracker().Get(deployments, ns, "orders")
		d := o.(*appsv1.Deployment).DeepCopy()
		d.Spec.Template.Spec.Containers[0].Image = "orders:v2"
		d.ResourceVersion = "999"
		_ = cs.Tracker().Update(deployments, d, ns)
		teammates = d.Spec.Template
		return true, nil, apierrors.NewInternalError(errors.New("etcd timeout"))
	})

	_, err := (&Manager{CS: cs, Settle: time.Millisecond}).Start(ctx, grpcRequest)
	if err == nil || !strings.Contains(err.Error(), "left as is: deployment/orders (update deployment/orders: pod template changed meanwhile)") {
		t.Fatalf("Start: err = %v, want the undo to say it left the template", err)
	}
	if diff := cmp.Diff(teammates, getTemplate(t, cs)); diff != "" {
		t.Errorf("template (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(svc.Spec.Ports, getPorts(t, cs)); diff != "" {
		t.Errorf("service ports (-want +got):\n%s", diff)
	}
	j := loadJournal(t, cs)
	if j == nil || j.AppliedTemplateHash != journal.Hash(planFor(t, "grpc").Template) {
		t.Fatalf("journal = %+v, want it kept with tether's applied template", j)
	}
	// And rollback, not forced, refuses the template too.
	steps, err := rollback.Restore(ctx, cs, orders, false)
	if !errors.Is(err, rollback.ErrChangedSince) || steps[0].Action != rollback.Refused {
		t.Errorf("rollback: %v, steps %+v; want the template refused", err, steps)
	}
}

// TestRecordReconfiguresAnInterceptsAgent: `tether record` on a workload
// whose agent an intercept added (it pauses recording once idle, here
// after 5m) restarts the agent to record until rollback, with the flags
// asked; the journal keeps the original, and rollback restores it.
func TestRecordReconfiguresAnInterceptsAgent(t *testing.T) {
	ctx := context.Background()
	cs, orig, svc := ordersRollingOut()
	m := &Manager{CS: cs, Settle: time.Millisecond}
	// The agent as an intercept with --agent-idle 5m adds it.
	added := grpcRequest
	added.RecordOnly, added.RecordArgs = true, []string{"--record-idle", "5m"}
	if _, err := m.Start(ctx, added); err != nil {
		t.Fatal(err)
	}
	agentArgs := func() []string {
		for _, c := range getTemplate(t, cs).Spec.Containers {
			if c.Name == inject.AgentContainer {
				return c.Args
			}
		}
		t.Fatal("no agent in the template")
		return nil
	}
	if !slices.Contains(agentArgs(), "5m") {
		t.Fatalf("agent args as added: %q", agentArgs())
	}
	tok, _ := token(t, cs)
	portsAdded := getPorts(t, cs)

	var lines []string
	m.Progress = func(s string) { lines = append(lines, s) }
	record := grpcRequest
	record.RecordArgs = []string{"--record-idle", "0", "--no-redact"}
	if _, err := m.Start(ctx, record); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(lines, func(s string) bool {
		return strings.Contains(s, "restarting the agent") && strings.Contains(s, "--record-idle 0 --no-redact") && strings.Contains(s, "--record-idle 5m")
	}) {
		t.Errorf("progress does not say the agent restarts and why:\n%s", strings.Join(lines, "\n"))
	}
	now := getTemplate(t, cs)
	if args := agentArgs(); !slices.Contains(args, "--no-redact") || slices.Contains(args, "5m") || !slices.Contains(args, "--forward") {
		t.Errorf("agent args after record: %q", args)
	}
	if again, _ := token(t, cs); again != tok {
		t.Error("the agent's token changed: open tunnels and other daemons lose it")
	}
	if diff := cmp.Diff(portsAdded, getPorts(t, cs)); diff != "" {
		t.Errorf("service ports changed (-before +after):\n%s", diff)
	}
	j := loadJournal(t, cs)
	if diff := cmp.Diff(orig, j.Template); diff != "" {
		t.Errorf("journaled template is not the original (-want +got):\n%s", diff)
	}
	if j.AppliedTemplateHash != journal.Hash(now) {
		t.Error("the journal does not know the template record applied")
	}

	// The same record again: nothing restarts.
	writes := len(writesTo(cs, "deployments"))
	if _, err := m.Start(ctx, record); err != nil {
		t.Fatal(err)
	}
	if n := len(writesTo(cs, "deployments")); n != writes {
		t.Errorf("the same record again wrote the deployment %d more times", n-writes)
	}

	if _, err := rollback.Restore(ctx, cs, orders, false); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orig, getTemplate(t, cs)); diff != "" {
		t.Errorf("template after rollback (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(svc.Spec.Ports, getPorts(t, cs)); diff != "" {
		t.Errorf("service ports after rollback (-want +got):\n%s", diff)
	}
}
