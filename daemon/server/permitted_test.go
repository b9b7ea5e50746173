package server

import (
	"context"
	"testing"

	"github.com/tetherkube/tether/internal/access"
)

// TestPermittedCached: a passing check is reused for the same feature,
// namespace and objects; other objects are checked again; a refusal is
// never reused.
func TestPermittedCached(t *testing.T) {
	ctx := context.Background()
	d, cs := fakeCluster(t, access.Rule{})
	count := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetResource().Resource == "selfsubjectaccessreviews" {
				n++
			}
		}
		return n
	}
	objs := access.Objects{Workload: "orders", ConfigMaps: []string{"app"}}
	if err := d.permitted(ctx, access.EnvSpec, "shop", objs, "env", envRole); err != nil {
		t.Fatal(err)
	}
	first := count()
	if first == 0 {
		t.Fatal("no access review was made")
	}
	if err := d.permitted(ctx, access.EnvSpec, "shop", objs, "env", envRole); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != first {
		t.Errorf("the second check made %d more reviews, want 0", n-first)
	}
	if err := d.permitted(ctx, access.EnvSpec, "shop", access.Objects{Workload: "orders", Secrets: []string{"creds"}}, "env", envRole); err != nil {
		t.Fatal(err)
	}
	if n := count(); n == first {
		t.Error("other objects were not checked")
	}

	// A refusal is checked again each time.
	deny := access.Rules(access.EnvSpec, objs)[0]
	d2, cs2 := fakeCluster(t, deny)
	for i := 0; i < 2; i++ {
		before := len(cs2.Actions())
		if err := d2.permitted(ctx, access.EnvSpec, "shop", objs, "env", envRole); err == nil {
			t.Fatalf("check %d passed without %v", i, deny)
		}
		if len(cs2.Actions()) == before {
			t.Errorf("check %d reused a refusal", i)
		}
	}
}
