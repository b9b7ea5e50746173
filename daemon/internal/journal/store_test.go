package journal_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

const ns = "shop"

var orders = journal.Workload{Kind: "Deployment", Namespace: ns, Name: "orders"}

func newEntry() *journal.Entry {
	return &journal.Entry{Workload: orders, Template: fakekube.Template("orders", "orders:v1"), CreatedAt: time.Unix(0, 0).UTC(), By: "test"}
}

// Finding 13: two daemons adding their own Service to one journal must not
// erase each other's entry.
func TestConcurrentAddsKeepBoth(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	if _, err := s.Begin(ctx, newEntry()); err != nil {
		t.Fatal(err)
	}
	a := journal.ServiceEntry{Ports: []corev1.ServicePort{{Name: "a", Port: 1}}}
	b := journal.ServiceEntry{Ports: []corev1.ServicePort{{Name: "b", Port: 2}}}
	addService(t, s, "svc-a", a, "svc-b", b)
	got, err := s.Load(ctx, orders)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]journal.ServiceEntry{"svc-a": a, "svc-b": b}, got.Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

// TestUpdateReadsTheKeyOnce: an update reads the journal and its key once
// (the key Secret was read again before sealing).
func TestUpdateReadsTheKeyOnce(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	if _, err := s.Begin(ctx, newEntry()); err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
	if _, err := s.Update(ctx, orders, func(e *journal.Entry) error { e.By = "someone else"; return nil }); err != nil {
		t.Fatal(err)
	}
	var reads []string
	for _, a := range cs.Actions() {
		if a.GetVerb() == "get" {
			reads = append(reads, a.GetResource().Resource)
		}
	}
	if diff := cmp.Diff([]string{"configmaps", "secrets"}, reads); diff != "" {
		t.Errorf("reads of one update (-want +got):\n%s", diff)
	}
	got, err := s.Load(ctx, orders)
	if err != nil || got.By != "someone else" {
		t.Fatalf("after the update: %+v, %v", got, err)
	}
}
