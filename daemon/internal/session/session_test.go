package session

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/tetherkube/tether/internal/access"
)

func obj(kind, name string, fields map[string]any) *unstructured.Unstructured {
	k := kindByName(kind)
	o := map[string]any{
		"apiVersion": k.GVR.GroupVersion().String(),
		"kind":       kind,
		"metadata": map[string]any{"name": name, "namespace": "shop", "uid": "uid-" + name, "resourceVersion": "7",
			"creationTimestamp": "2026-11-30T10:00:00Z", "managedFields": []any{map[string]any{"manager": "kubectl"}}},
	}
	for k, v := range fields {
		o[k] = v
	}
	return &unstructured.Unstructured{Object: runtime.DeepCopyJSON(o)}
}

func deployment(image string, replicas int64, env ...any) *unstructured.Unstructured {
	c := map[string]any{"name": "app", "image": image}
	if len(env) > 0 {
		c["env"] = env
	}
	d := obj("Deployment", "orders", map[string]any{
		"spec": map[string]any{"replicas": replicas, "selector": map[string]any{"matchLabels": map[string]any{"app": "orders"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "orders"}, "creationTimestamp": nil},
				"spec": map[string]any{"containers": []any{c}}}},
		"status": map[string]any{"replicas": int64(3)},
	})
	d.SetGeneration(4)
	d.SetAnnotations(map[string]string{"deployment.kubernetes.io/revision": "4", "team": "shop"})
	return d
}

func TestNormalize(t *testing.T) {
	got := Normalize(deployment("orders:1", 3).Object)
	want := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "orders", "annotations": map[string]any{"team": "shop"}},
		"spec": map[string]any{"replicas": int64(3), "selector": map[string]any{"matchLabels": map[string]any{"app": "orders"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "orders"}},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "orders:1"}}}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
}

func secret(name string, data map[string]any) *unstructured.Unstructured {
	return obj("Secret", name, map[string]any{"type": "Opaque", "data": data})
}

func service(name, ip string) *unstructured.Unstructured {
	return obj("Service", name, map[string]any{"spec": map[string]any{"clusterIP": ip, "clusterIPs": []any{ip},
		"ports": []any{map[string]any{"name": "http", "port": int64(80)}}}})
}

func byRef(objs ...*unstructured.Unstructured) map[Ref]*unstructured.Unstructured {
	out := map[Ref]*unstructured.Unstructured{}
	for _, o := range objs {
		out[Ref{Kind: o.GetKind(), Name: o.GetName()}] = o
	}
	return out
}

func TestCompare(t *testing.T) {
	before := Normalized(byRef(
		deployment("orders:1", 3),
		secret("db", map[string]any{"password": "b2xk"}), // "old"
		service("orders", "10.43.0.10"),
		obj("NetworkPolicy", "deny", map[string]any{"spec": map[string]any{"podSelector": map[string]any{}}}),
	))
	after := Normalized(byRef(
		deployment("orders:2", 1, map[string]any{"name": "MODE", "valueFrom": map[string]any{"configMapKeyRef": map[string]any{"name": "debug", "key": "mode"}}}),
		secret("db", map[string]any{"password": "bmV3"}), // "new"
		service("orders", "10.43.0.99"),                  // deleted and created again: a new IP is no change
		service("debug", "10.43.0.11"),
	))
	got := Compare(before, after)
	type row struct {
		Ref    string
		Change string
		Paths  []string
	}
	var rows []row
	for _, c := range got {
		rows = append(rows, row{c.Ref.String(), c.Change, c.Paths})
	}
	want := []row{
		{"secret/db", Modified, []string{"data.password"}},
		{"service/debug", Created, nil},
		{"networkpolicy/deny", Deleted, nil},
		{"deployment/orders", Modified, []string{"spec.replicas", "spec.template.spec.containers[name=app].env", "spec.template.spec.containers[name=app].image"}},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("Compare (-want +got):\n%s", diff)
	}
	for _, c := range got {
		if c.Kind == "Secret" && (strings.Contains(c.Text, "b2xk") || strings.Contains(c.Text, "bmV3") || !strings.Contains(c.Text, "(3 bytes, sha256 ")) {
			t.Errorf("a Secret's diff shows its values, or not their hash:\n%s", c.Text)
		}
		if c.Ref.String() == "deployment/orders" {
			for _, line := range []string{"-  replicas: 3\n", "+  replicas: 1\n", "-      - image: orders:1\n", "+      - env:\n"} {
				if !strings.Contains(c.Text, line) {
					t.Errorf("the deployment's diff lacks %q:\n%s", line, c.Text)
				}
			}
		}
	}
}

func TestPlan(t *testing.T) {
	immutableCM := obj("ConfigMap", "flags", map[string]any{"immutable": true, "data": map[string]any{"a": "2"}})
	snap := Normalized(byRef(
		deployment("orders:1", 3),
		obj("ConfigMap", "flags", map[string]any{"data": map[string]any{"a": "1"}}),
		obj("ConfigMap", "settings", map[string]any{"data": map[string]any{"a": "1"}}),
		obj("NetworkPolicy", "deny", map[string]any{"spec": map[string]any{}}),
	))
	cur := byRef(
		deployment("orders:2", 1),
		immutableCM,
		obj("ConfigMap", "settings", map[string]any{"data": map[string]any{"a": "1"}}),
		obj("ConfigMap", "debug", map[string]any{"data": map[string]any{"mode": "x"}}),
		service("debug", "10.43.0.11"),
	)
	got := Plan(snap, cur, false)
	var acts []string
	for _, s := range got {
		acts = append(acts, s.Action+" "+s.Ref.String())
	}
	want := []string{"refuse configmap/flags", "create networkpolicy/deny", "update deployment/orders", "delete service/debug", "delete configmap/debug"}
	if diff := cmp.Diff(want, acts); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if r := Refused(got); len(r) != 1 || !strings.Contains(r[0].Reason, "changed data, immutable") {
		t.Errorf("refused: %+v", r)
	}
	if got := Plan(snap, cur, true)[0]; got.Action != ActReplace {
		t.Errorf("with force: %+v, want a replace", got)
	}

	moved := deployment("orders:1", 3)
	_ = unstructured.SetNestedField(moved.Object, map[string]any{"matchLabels": map[string]any{"app": "orders-v2"}}, "spec", "selector")
	for _, s := range Plan(snap, byRef(moved), false) {
		if s.Ref.String() == "deployment/orders" && (s.Action != ActRefuse || !strings.Contains(s.Reason, "spec.selector")) {
			t.Errorf("a new selector: %s %s", s.Action, s.Reason)
		}
	}
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	lists := map[schema.GroupVersionResource]string{}
	for _, k := range Kinds {
		lists[k.GVR] = k.Kind + "List"
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, objs...)
}

func TestTakeApplyVerify(t *testing.T) {
	ctx := context.Background()
	dyn := fakeDynamic(deployment("orders:1", 3), secret("db", map[string]any{"password": "b2xk"}),
		obj("NetworkPolicy", "deny", map[string]any{"spec": map[string]any{}}),
		obj("ConfigMap", "kube-root-ca.crt", map[string]any{"data": map[string]any{"ca.crt": "x"}}),
		obj("ConfigMap", "tether-journal-deployment-orders", map[string]any{"metadata": map[string]any{"name": "tether-journal-deployment-orders",
			"labels": map[string]any{"tether.dev/journal": "true"}}}))
	c := Client{Dyn: dyn}
	snap, err := c.Take(ctx, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range snap.Objects {
		names = append(names, o.Ref.String())
	}
	if diff := cmp.Diff([]string{"secret/db", "networkpolicy/deny", "deployment/orders"}, names); diff != "" {
		t.Fatalf("snapshot (-want +got):\n%s", diff)
	}

	// The session's changes.
	deps := dyn.Resource(kindByName("Deployment").GVR).Namespace("shop")
	if _, err := deps.Update(ctx, deployment("orders:2", 1), metaOpts()); err != nil {
		t.Fatal(err)
	}
	if err := dyn.Resource(kindByName("NetworkPolicy").GVR).Namespace("shop").Delete(ctx, "deny", deleteOpts()); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(kindByName("ConfigMap").GVR).Namespace("shop").Create(ctx,
		obj("ConfigMap", "debug", map[string]any{"data": map[string]any{"mode": "x"}}), createOpts()); err != nil {
		t.Fatal(err)
	}

	cur, err := c.Read(ctx, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan(snap.ByRef(), cur, false)
	done, err := c.Apply(ctx, "shop", plan, snap.ByRef(), cur, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 3 {
		t.Errorf("done %+v, want 3 steps", done)
	}
	left, err := c.Verify(ctx, "shop", nil, snap.ByRef())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("left after the rollback: %+v", left)
	}
	got, err := deps.Get(ctx, "orders", getOpts())
	if err != nil {
		t.Fatal(err)
	}
	if a := got.GetAnnotations()["deployment.kubernetes.io/revision"]; a != "4" {
		t.Errorf("the controller's annotation: %q, want it kept", a)
	}
	// Once more: nothing left to do.
	cur, _ = c.Read(ctx, "shop", nil)
	if p := Plan(snap.ByRef(), cur, false); len(p) != 0 {
		t.Errorf("a second plan: %+v", p)
	}
}

func TestParseRefs(t *testing.T) {
	got, err := ParseRefs([]string{"deploy/orders", "CM/flags", "hpa/orders"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Ref{{"Deployment", "orders"}, {"ConfigMap", "flags"}, {"HorizontalPodAutoscaler", "orders"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"orders", "pod/orders", "deploy/"} {
		if _, err := ParseRefs([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHunks(t *testing.T) {
	a := strings.SplitAfter("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "\n")
	b := strings.SplitAfter("a\nb\nc\nd\nE\nf\ng\nh\ni\nj\n", "\n")
	got := hunks(a[:len(a)-1], b[:len(b)-1], 2)
	want := "@@ -3,5 +3,5 @@\n c\n d\n-e\n+E\n f\n g\n"
	if got != want {
		t.Errorf("hunks:\n%s\nwant:\n%s", got, want)
	}
}

// TestKindsMatchAccess: the permission checks ask about exactly the
// resources a session reads and writes.
func TestKindsMatchAccess(t *testing.T) {
	var got []access.SessionResource
	for _, k := range Kinds {
		got = append(got, access.SessionResource{Group: k.GVR.Group, Resource: k.GVR.Resource})
	}
	if diff := cmp.Diff(access.SessionResources, got); diff != "" {
		t.Errorf("access.SessionResources (-want +got):\n%s", diff)
	}
}

// TestAutoscaledReplicas: the replica count of a workload an HPA of the
// snapshot scales is the HPA's: no change in a diff, kept by a rollback.
func TestAutoscaledReplicas(t *testing.T) {
	ctx := context.Background()
	hpa := obj("HorizontalPodAutoscaler", "orders", map[string]any{"spec": map[string]any{
		"scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "orders"},
		"minReplicas":    int64(2), "maxReplicas": int64(10)}})
	dyn := fakeDynamic(deployment("orders:1", 3), hpa)
	c := Client{Dyn: dyn}
	snap, err := c.Take(ctx, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	deps := dyn.Resource(kindByName("Deployment").GVR).Namespace("shop")
	if _, err := deps.Update(ctx, deployment("orders:2", 5), metaOpts()); err != nil { // the HPA scaled to 5, someone set the image
		t.Fatal(err)
	}
	cur, err := c.Read(ctx, "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	changes := Compare(snap.ByRef(), Normalized(cur))
	if len(changes) != 1 || strings.Join(changes[0].Paths, ",") != "spec.template.spec.containers[name=app].image" {
		t.Fatalf("changes %+v, want only the image", changes)
	}
	if _, err := c.Apply(ctx, "shop", Plan(snap.ByRef(), cur, false), snap.ByRef(), cur, func(string) {}); err != nil {
		t.Fatal(err)
	}
	got, err := deps.Get(ctx, "orders", getOpts())
	if err != nil {
		t.Fatal(err)
	}
	n, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas")
	img, _, _ := unstructured.NestedSlice(got.Object, "spec", "template", "spec", "containers")
	if n != 5 || img[0].(map[string]any)["image"] != "orders:1" {
		t.Errorf("after the rollback: %d replicas, containers %v; want 5 (the HPA's) and orders:1", n, img)
	}
}
