package intercept

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/internal/errdefs"
)

// readyPod is a running, ready pod of deployment/orders (its ReplicaSet
// orders-abc), with extra labels.
func readyPod(name string, extra map[string]string, ports ...int32) *corev1.Pod {
	tmpl := fakekube.Template("orders", "app:v1")
	labels := map[string]string{"app": "orders", appsv1.DefaultDeploymentUniqueLabelKey: "abc"}
	maps.Copy(labels, extra)
	yes := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "orders-abc", Controller: &yes}}},
		Spec: tmpl.Spec,
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, port := range ports {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port})
	}
	return p
}

// noRestartCluster holds deployment/orders, its Service and pods, and
// serves pods/ephemeralcontainers unless without.
func noRestartCluster(without bool, objs ...runtime.Object) *fake.Clientset {
	objs = append(objs, fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", fakekube.Template("orders", "app:v1")), fakekube.Service(ns, "orders"))
	cs := fakekube.New(objs...)
	res := []metav1.APIResource{{Name: "pods"}, {Name: "services"}}
	if !without {
		res = append(res, metav1.APIResource{Name: "pods/ephemeralcontainers"})
	}
	cs.Fake.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: res}}
	return cs
}

var noRestartRequest = Request{Namespace: ns, Workload: "orders", ServicePort: "web", LocalPort: 3000, LocalPortLater: true,
	AgentImage: "agent:v1", NoRestart: true, ID: "0123abcd"}

func TestPlanNoRestart(t *testing.T) {
	// One pod declares 17000: the agents take 17001 in every pod.
	cs := noRestartCluster(false, readyPod("orders-1", nil), readyPod("orders-2", nil, inject.FirstAgentPort))
	np, err := (&Manager{CS: cs}).planNoRestart(context.Background(), noRestartRequest)
	if err != nil {
		t.Fatal(err)
	}
	if np.agentPort != inject.FirstAgentPort+1 || np.appPort != 8080 {
		t.Errorf("agent port %d, app port %d; want %d in front of 8080", np.agentPort, np.appPort, inject.FirstAgentPort+1)
	}
	if diff := cmp.Diff(map[string]string{"app": "orders", MarkLabel: "0123abcd"}, np.selector); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	want := fakekube.Service(ns, "orders").Spec.Ports
	want[0].TargetPort = intstr.FromInt32(inject.FirstAgentPort + 1)
	if diff := cmp.Diff(want, np.ports); diff != "" {
		t.Errorf("ports (-want +got): only web's targetPort moves\n%s", diff)
	}
	var names []string
	for _, p := range np.pods {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"orders-1", "orders-2"}, names); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
	if w := fakekube.Writes(cs); len(w) != 0 {
		t.Errorf("planning wrote %v", w)
	}
}

func TestPlanNoRestartRefusals(t *testing.T) {
	notReady := readyPod("orders-1", nil)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	sidecar := fakekube.Template("orders", "app:v1")
	sidecar.Spec.Containers = append(sidecar.Spec.Containers, corev1.Container{Name: inject.AgentContainer, Args: []string{"--forward", "17000:8080"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 17000}}})
	sidecar.Spec.Containers[0].Ports[0].Name = ""
	tests := []struct {
		name  string
		cs    func() *fake.Clientset
		class error
		want  string
	}{
		{"no ready pod", func() *fake.Clientset { return noRestartCluster(false, notReady) }, errdefs.ErrUser, "deployment/orders has no ready pod"},
		{"no ephemeral containers", func() *fake.Clientset { return noRestartCluster(true, readyPod("orders-1", nil)) },
			errdefs.ErrUser, "this cluster serves no pods/ephemeralcontainers"},
		{"a journal already", func() *fake.Clientset {
			cs := noRestartCluster(false, readyPod("orders-1", nil))
			if _, err := (journal.Store{CS: cs}).Begin(context.Background(), &journal.Entry{Workload: orders, NoRestart: true}); err != nil {
				t.Fatal(err)
			}
			cs.ClearActions()
			return cs
		}, errdefs.ErrFailedCheck, "deployment/orders is intercepted with --no-restart by another tether"},
		{"a sidecar agent", func() *fake.Clientset {
			cs := noRestartCluster(false, readyPod("orders-1", nil))
			d, _ := cs.AppsV1().Deployments(ns).Get(context.Background(), "orders", metav1.GetOptions{})
			d.Spec.Template = sidecar
			if _, err := cs.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			cs.ClearActions()
			return cs
		}, errdefs.ErrUser, "already runs tether's sidecar agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := tt.cs()
			_, err := (&Manager{CS: cs}).Start(context.Background(), noRestartRequest)
			if err == nil || !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want class %v and %q", err, tt.class, tt.want)
			}
			if w := fakekube.Writes(cs); len(w) != 0 {
				t.Errorf("a refused intercept wrote %v", w)
			}
		})
	}
}

// TestSidecarRefusesNoRestartJournal: a sidecar intercept of a workload
// an intercept --no-restart holds is refused, naming it.
func TestSidecarRefusesNoRestartJournal(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil))
	startedFollower(t, cs)
	cs.ClearActions()
	req := noRestartRequest
	req.NoRestart = false
	_, err := (&Manager{CS: cs}).Start(context.Background(), req)
	if !errors.Is(err, errdefs.ErrFailedCheck) || !strings.Contains(err.Error(), "intercepted with --no-restart") {
		t.Fatalf("err = %v", err)
	}
	if w := fakekube.Writes(cs); len(w) != 0 {
		t.Errorf("a refused intercept wrote %v", w)
	}
}

// startedFollower plans and begins the journal as startNoRestart does,
// then marks the pods and retargets the Service (what needs no agent).
func startedFollower(t *testing.T, cs *fake.Clientset) *follower {
	t.Helper()
	ctx := context.Background()
	m := &Manager{CS: cs}
	np, err := m.planNoRestart(ctx, noRestartRequest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (journal.Store{CS: cs}).Begin(ctx, np.entry()); err != nil {
		t.Fatal(err)
	}
	f := m.newFollower(noRestartRequest, np)
	f.journaledAll()
	for _, p := range np.pods {
		if err := f.mark(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.retarget(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// changes are the writes to the journal, the pods and the Service, in
// order.
func changes(cs *fake.Clientset) []string {
	var out []string
	for _, w := range fakekube.Writes(cs) {
		if strings.Contains(w, "configmaps/tether-journal") || strings.Contains(w, " pods/") || strings.Contains(w, " services/") {
			out = append(out, w)
		}
	}
	return out
}

func podLabels(t *testing.T, cs *fake.Clientset) map[string]map[string]string {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, p := range list.Items {
		out[p.Name] = p.Labels
	}
	return out
}

// TestNoRestartJournalAndUndo: each mark and the Service's selector and
// ports are journaled before they change; undoing restores the Service
// first (a Service that still selected by the marks would have no
// endpoint without them), then every pod's label as it was (one had a
// value of its own), and deletes the journal.
func TestNoRestartJournalAndUndo(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil), readyPod("orders-2", map[string]string{MarkLabel: "someone's"}))
	ctx := context.Background()
	svcBefore, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
	labelsBefore := podLabels(t, cs)
	cs.ClearActions()

	f := startedFollower(t, cs)
	// Every change comes after the journal write that records it: the
	// journal is begun with them all.
	wantOrder := []string{"create configmaps/tether-journal-deployment-orders", "patch pods/orders-1", "patch pods/orders-2", "update services/orders"}
	if diff := cmp.Diff(wantOrder, changes(cs)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	e := loadJournal(t, cs)
	someones := "someone's"
	pod1, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-1", metav1.GetOptions{})
	pod2, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-2", metav1.GetOptions{})
	wantMarks := map[string]journal.Mark{
		"orders-1": {UID: pod1.UID, Label: MarkLabel, Value: "0123abcd"},
		"orders-2": {UID: pod2.UID, Label: MarkLabel, Value: "0123abcd", Previous: &someones},
	}
	if diff := cmp.Diff(wantMarks, e.Marks); diff != "" {
		t.Errorf("journaled marks (-want +got):\n%s", diff)
	}
	se := e.Services["orders"]
	if diff := cmp.Diff(svcBefore.Spec.Selector, se.Selector); diff != "" {
		t.Errorf("journaled selector (-want +got):\n%s", diff)
	}
	svc, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
	if se.AppliedSelectorHash != journal.Hash(svc.Spec.Selector) || se.AppliedPortsHash != journal.Hash(svc.Spec.Ports) {
		t.Errorf("the journal does not recognise the Service as tether set it")
	}

	cs.ClearActions()
	steps, err := undoNoRestart(ctx, cs, orders)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, w := range fakekube.Writes(cs) {
		if strings.HasPrefix(w, "update services") || strings.HasPrefix(w, "update pods") {
			order = append(order, w)
		}
	}
	if diff := cmp.Diff([]string{"update services/orders", "update pods/orders-1", "update pods/orders-2"}, order); diff != "" {
		t.Errorf("restore order (-want +got):\n%s", diff)
	}
	svcAfter, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
	if diff := cmp.Diff(svcBefore.Spec, svcAfter.Spec); diff != "" {
		t.Errorf("service (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(labelsBefore, podLabels(t, cs)); diff != "" {
		t.Errorf("pod labels (-before +after):\n%s", diff)
	}
	if e := loadJournal(t, cs); e != nil {
		t.Errorf("journal left: %+v", e)
	}
	if !slices.ContainsFunc(steps, func(s rollback.Step) bool { return s.Action == rollback.Kept && s.Reason == rollback.EphemeralNote }) {
		t.Errorf("steps do not say the ephemeral agents stay: %+v", steps)
	}
	_ = f
}

// TestNoRestartMarkLater: a pod the follower marks after the start is
// journaled before it is marked, in one patch that names its UID.
func TestNoRestartMarkLater(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil))
	ctx := context.Background()
	f := startedFollower(t, cs)
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, readyPod("orders-2", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod2, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-2", metav1.GetOptions{})
	cs.ClearActions()
	if err := f.mark(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"update configmaps/tether-journal-deployment-orders", "patch pods/orders-2"}, changes(cs)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if m := loadJournal(t, cs).Marks["orders-2"]; m.UID != pod2.UID || m.Value != "0123abcd" {
		t.Errorf("journaled mark %+v", m)
	}
	if got := podLabels(t, cs)["orders-2"][MarkLabel]; got != "0123abcd" {
		t.Errorf("orders-2's mark = %q", got)
	}
	// Marked again (its tunnel came back): no journal write.
	cs.ClearActions()
	if err := f.mark(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"patch pods/orders-2"}, changes(cs)); diff != "" {
		t.Errorf("writes when marked again (-want +got):\n%s", diff)
	}
}

// TestNoRestartRollbackKeepsMarks: a Service someone changed since is
// refused, and the marks it may still select by are kept with it.
func TestNoRestartRollbackKeepsMarks(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil))
	ctx := context.Background()
	startedFollower(t, cs)
	svc, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
	svc.Spec.Selector["team"] = "blue"
	if _, err := cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	steps, err := rollback.Restore(ctx, cs, orders, false)
	if !errors.Is(err, rollback.ErrChangedSince) {
		t.Fatalf("err = %v, want ErrChangedSince", err)
	}
	got := map[string]string{}
	for _, s := range steps {
		got[s.Object] = s.Action
	}
	want := map[string]string{"deployment/orders": rollback.Unchanged, "service/orders": rollback.Refused,
		"pod/orders-1 label " + MarkLabel: rollback.Kept, "agents in pod/orders-1": rollback.Kept,
		"configmap/tether-journal-deployment-orders": rollback.Kept}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if p, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-1", metav1.GetOptions{}); p.Labels[MarkLabel] != "0123abcd" {
		t.Errorf("the mark went while the Service still selects by it: %v", p.Labels)
	}
}

// TestNoRestartRollbackPodReplaced: a marked pod replaced by one of the
// same name (a StatefulSet's) is not touched: absent.
func TestNoRestartRollbackPodReplaced(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil))
	ctx := context.Background()
	startedFollower(t, cs)
	p, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-1", metav1.GetOptions{})
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "orders-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion, p.UID = "", types.UID("new")
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	steps, err := rollback.Restore(ctx, cs, orders, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Object == "pod/orders-1 label "+MarkLabel && s.Action != rollback.Absent {
			t.Errorf("replaced pod: %+v, want absent", s)
		}
	}
	if p, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-1", metav1.GetOptions{}); p.Labels[MarkLabel] != "0123abcd" {
		t.Errorf("the new pod's label was changed: %v", p.Labels)
	}
}

// TestUnmark removes only this intercept's mark.
func TestUnmark(t *testing.T) {
	cs := noRestartCluster(false, readyPod("orders-1", nil), readyPod("orders-2", nil))
	ctx := context.Background()
	f := startedFollower(t, cs)
	p, _ := cs.CoreV1().Pods(ns).Get(ctx, "orders-2", metav1.GetOptions{})
	p.Labels[MarkLabel] = "another"
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []string{"orders-1", "orders-2", "gone"} {
		if err := f.unmark(ctx, pod); err != nil {
			t.Fatalf("unmark %s: %v", pod, err)
		}
	}
	got := podLabels(t, cs)
	if _, ok := got["orders-1"][MarkLabel]; ok {
		t.Errorf("orders-1 keeps its mark")
	}
	if got["orders-2"][MarkLabel] != "another" {
		t.Errorf("orders-2's label of another intercept was changed: %v", got["orders-2"])
	}
	if len(f.marked()) != 0 {
		t.Errorf("marked() = %v after unmarking", f.marked())
	}
}

// TestRetarget: the Service is updated at the version planned from, with
// no read when nobody changed it; a change elsewhere in it is kept, and a
// change to its ports or selector stops the intercept.
func TestRetarget(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*corev1.Service)
		wantReads int
		wantErr   error
	}{
		{name: "unchanged"},
		{name: "an annotation added meanwhile", change: func(s *corev1.Service) { s.Annotations = map[string]string{"team": "blue"} }, wantReads: 1},
		{name: "its selector changed meanwhile", change: func(s *corev1.Service) { s.Spec.Selector["team"] = "blue" }, wantReads: 1, wantErr: ErrPortsChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := noRestartCluster(false, readyPod("orders-1", nil))
			ctx := context.Background()
			m := &Manager{CS: cs}
			np, err := m.planNoRestart(ctx, noRestartRequest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (journal.Store{CS: cs}).Begin(ctx, np.entry()); err != nil {
				t.Fatal(err)
			}
			f := m.newFollower(noRestartRequest, np)
			f.journaledAll()
			if tt.change != nil {
				svc, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
				tt.change(svc)
				if _, err := cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cs.ClearActions()
			err = f.retarget(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			reads := 0
			for _, a := range cs.Actions() {
				if a.GetVerb() == "get" && a.GetResource().Resource == "services" {
					reads++
				}
			}
			if reads != tt.wantReads {
				t.Errorf("%d reads of the Service, want %d", reads, tt.wantReads)
			}
			svc, _ := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
			if tt.wantErr != nil {
				return
			}
			if diff := cmp.Diff(np.selector, svc.Spec.Selector); diff != "" {
				t.Errorf("selector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(np.ports, svc.Spec.Ports); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if tt.change != nil && svc.Annotations["team"] != "blue" {
				t.Errorf("the annotation added meanwhile is gone: %v", svc.Annotations)
			}
		})
	}
}
