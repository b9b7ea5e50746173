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
