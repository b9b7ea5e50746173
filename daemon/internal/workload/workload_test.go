package workload_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

const ns = "shop"

func statefulSet(name string) *appsv1.StatefulSet {
	d := fakekube.Deployment(ns, name, fakekube.Template(name, "db:v1"))
	return &appsv1.StatefulSet{ObjectMeta: d.ObjectMeta, Spec: appsv1.StatefulSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector, Template: d.Spec.Template}}
}

// TestSetTemplate: the template changes only if it still is the one the
// change was planned from; a conflict is retried after reading again.
func TestSetTemplate(t *testing.T) {
	v1 := fakekube.Template("orders", "orders:v1")
	v2 := fakekube.Template("orders", "orders:v2")
	v3 := fakekube.Template("orders", "orders:v3")
	for _, kind := range []string{workload.Deployment, workload.StatefulSet} {
		for _, tc := range []struct {
			name       string
			from       bool // plan from the current template (else from v3)
			conflicts  int
			wantErr    error
			wantImage  string
			wantWrites int
		}{
			{"from the current template", true, 0, nil, "orders:v2", 1},
			{"a conflict is retried", true, 1, nil, "orders:v2", 2},
			{"from a template changed meanwhile", false, 0, workload.ErrTemplateChanged, "orders:v1", 0},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				w := journal.Workload{Kind: kind, Namespace: ns, Name: "orders"}
				var obj runtime.Object = fakekube.Deployment(ns, "orders", v1)
				resource := "deployments"
				if kind == workload.StatefulSet {
					s := statefulSet("orders")
					s.Spec.Template = v1
					obj, resource = s, "statefulsets"
				}
				cs := fakekube.New(obj)
				n := 0
				cs.PrependReactor("update", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
					if n++; n <= tc.conflicts {
						return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: resource}, "orders", errors.New("modified"))
					}
					return false, nil, nil
				})
				from := v3
				if tc.from {
					from = v1
				}
				c := workload.Client{CS: cs}
				_, err := c.SetTemplate(ctx, w, from, v2)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SetTemplate: err = %v, want %v", err, tc.wantErr)
				}
				got, err := c.Template(ctx, w)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.wantImage, got.Spec.Containers[0].Image); diff != "" {
					t.Errorf("image (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.wantWrites, len(fakekube.Writes(cs))); diff != "" {
					t.Errorf("writes (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		ref, kind, name string
		bad             bool
	}{
		{"orders", "", "orders", false},
		{"deploy/orders", workload.Deployment, "orders", false},
		{"deployments.apps/orders", workload.Deployment, "orders", false},
		{"sts/db", workload.StatefulSet, "db", false},
		{"pod/orders", "", "", true},
		{"deploy/", "", "", true},
		{"deploy/a/b", "", "", true},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			kind, name, err := workload.ParseRef(tc.ref)
			if (err != nil) != tc.bad || (err != nil && !errors.Is(err, errdefs.ErrUser)) {
				t.Fatalf("err = %v, want a user error: %v", err, tc.bad)
			}
			if diff := cmp.Diff([2]string{tc.kind, tc.name}, [2]string{kind, name}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	cs := fakekube.New(fakekube.Namespace(ns), fakekube.Deployment(ns, "orders", fakekube.Template("orders", "orders:v1")),
		fakekube.Deployment(ns, "db", fakekube.Template("db", "db:v1")), statefulSet("db"))
	for _, tc := range []struct {
		ns, ref string
		want    journal.Workload
		wantErr error
		msg     string
	}{
		{ns, "orders", journal.Workload{Kind: workload.Deployment, Namespace: ns, Name: "orders"}, nil, ""},
		{ns, "sts/db", journal.Workload{Kind: workload.StatefulSet, Namespace: ns, Name: "db"}, nil, ""},
		{ns, "db", journal.Workload{}, workload.ErrAmbiguous, "both deploy/db and sts/db exist in namespace shop; say which"},
		{ns, "cart", journal.Workload{}, workload.ErrNotFound, `no deployment or statefulset named "cart" in namespace shop; it has: deploy/db, deploy/orders, sts/db`},
		{"nope", "orders", journal.Workload{}, workload.ErrNotFound, `namespace "nope" does not exist (choose one with -n)`},
	} {
		t.Run(tc.ns+"/"+tc.ref, func(t *testing.T) {
			got, err := workload.Client{CS: cs}.Resolve(context.Background(), tc.ns, tc.ref)
			if !errors.Is(err, tc.wantErr) || (err != nil && err.Error() != tc.msg) {
				t.Fatalf("err = %v, want %v: %s", err, tc.wantErr, tc.msg)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
