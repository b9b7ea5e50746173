package journal_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/internal/errdefs"
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

// TestBeginRefusedLeavesNothing: when the API server refuses the journal's
// ConfigMap (a ResourceQuota, an admission policy), Begin is a user error
// saying so, and the key Secret it created for that journal is gone again.
func TestBeginRefusedLeavesNothing(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	cs.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, orders.ConfigMapName(),
			errors.New("exceeded quota: no-more-configmaps"))
	})
	s := journal.Store{CS: cs}
	_, err := s.Begin(ctx, newEntry())
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), "exceeded quota") || !strings.Contains(err.Error(), "nothing in the cluster was changed") {
		t.Fatalf("Begin with the journal refused: %v; want a user error with the server's reason", err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("secrets left after the refused journal: %v", secrets.Items)
	}
}

// TestDropOrphanKey: a key left without its journal (a rollback
// interrupted between the two deletes) is removed; a key whose journal
// exists stays.
func TestDropOrphanKey(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	if _, err := s.Begin(ctx, newEntry()); err != nil {
		t.Fatal(err)
	}
	if dropped, err := s.DropOrphanKey(ctx, orders); err != nil || dropped {
		t.Fatalf("with its journal: dropped %v, %v", dropped, err)
	}
	// The rollback dies after deleting the journal, before the key.
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, orders.ConfigMapName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if dropped, err := s.DropOrphanKey(ctx, orders); err != nil || !dropped {
		t.Fatalf("a key without its journal: dropped %v, %v", dropped, err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, orders.KeySecretName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the key is still there: %v", err)
	}
	if dropped, err := s.DropOrphanKey(ctx, orders); err != nil || dropped {
		t.Errorf("nothing left: dropped %v, %v", dropped, err)
	}
}

// TestBeginSurvivesItsKeyRemoved: a key removed between Begin's read of
// it and the journal's create (a rollback's orphan-key cleanup racing a
// new intercept) makes Begin take its journal back and begin again: the
// journal it returns verifies. BeginNew likewise, its key removed right
// after it made it.
func TestBeginSurvivesItsKeyRemoved(t *testing.T) {
	for name, begin := range map[string]func(journal.Store, context.Context, *journal.Entry) (*journal.Entry, error){
		"Begin": journal.Store.Begin, "BeginNew": journal.Store.BeginNew,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cs := fakekube.New()
			removed := false
			cs.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				if !removed { // the cleanup runs just before the first journal lands
					removed = true
					if err := cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, ns, orders.KeySecretName()); err != nil {
						t.Fatal(err)
					}
				}
				return false, nil, nil
			})
			s := journal.Store{CS: cs}
			if _, err := begin(s, ctx, newEntry()); err != nil {
				t.Fatal(err)
			}
			if !removed {
				t.Fatal("the key was never removed: the test did not race")
			}
			if _, err := s.Load(ctx, orders); err != nil {
				t.Errorf("the journal does not verify after its key was removed mid-begin: %v", err)
			}
		})
	}
}

// TestUpdateFrom: an update from the entry last written is one write, no
// read, and the journal it writes verifies; from an entry someone's
// update made stale, it reads the journal again and keeps their change.
// last itself is not changed.
func TestUpdateFrom(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	last, err := s.Begin(ctx, newEntry())
	if err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
	next, err := s.UpdateFrom(ctx, last, func(e *journal.Entry) error { e.AppliedTemplateHash = "h1"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, a := range cs.Actions() {
		verbs = append(verbs, a.GetVerb()+" "+a.GetResource().Resource)
	}
	if diff := cmp.Diff([]string{"update configmaps"}, verbs); diff != "" {
		t.Errorf("requests of one update from the last entry (-want +got):\n%s", diff)
	}
	if last.AppliedTemplateHash != "" {
		t.Errorf("last was changed: %q", last.AppliedTemplateHash)
	}
	if got, err := s.Load(ctx, orders); err != nil || got.AppliedTemplateHash != "h1" {
		t.Fatalf("after the update: %+v, %v", got, err)
	}

	// Another tether writes; next is stale.
	a := journal.ServiceEntry{Ports: []corev1.ServicePort{{Name: "a", Port: 1}}}
	if _, err := s.Update(ctx, orders, func(e *journal.Entry) error {
		e.Services = map[string]journal.ServiceEntry{"svc-a": a}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateFrom(ctx, next, func(e *journal.Entry) error { e.AppliedTemplateHash = "h2"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, orders)
	if err != nil {
		t.Fatal(err)
	}
	if got.AppliedTemplateHash != "h2" || got.Services["svc-a"].Ports == nil {
		t.Errorf("after an update from a stale entry: hash %q, services %v; want h2 and the other tether's svc-a", got.AppliedTemplateHash, got.Services)
	}
}

// TestBeginNew: where there is no journal, BeginNew creates the key and
// the journal with no read before them (and reads the key once, after);
// where there is one after all, or a Secret of the key's name that is not
// tether's, it does what Begin does and changes nothing.
func TestBeginNew(t *testing.T) {
	ctx := context.Background()
	requests := func(cs *fake.Clientset) []string {
		var out []string
		for _, a := range cs.Actions() {
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
		return out
	}
	t.Run("none yet", func(t *testing.T) {
		cs := fakekube.New()
		s := journal.Store{CS: cs}
		e, err := s.BeginNew(ctx, newEntry())
		if err != nil || !e.Created() {
			t.Fatalf("BeginNew = %+v, %v; want a journal created", e, err)
		}
		want := []string{"create secrets", "create configmaps", "get secrets"}
		if diff := cmp.Diff(want, requests(cs)); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if got, err := s.Load(ctx, orders); err != nil || got == nil || got.By != "test" {
			t.Errorf("the journal BeginNew wrote: %+v, %v", got, err)
		}
	})
	t.Run("one there", func(t *testing.T) {
		cs := fakekube.New()
		s := journal.Store{CS: cs}
		first := newEntry()
		first.By = "the first"
		if _, err := s.Begin(ctx, first); err != nil {
			t.Fatal(err)
		}
		key, err := cs.CoreV1().Secrets(ns).Get(ctx, orders.KeySecretName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := s.BeginNew(ctx, newEntry())
		if err != nil || e.Created() || e.By != "the first" {
			t.Fatalf("BeginNew = %+v, %v; want the journal there", e, err)
		}
		after, err := cs.CoreV1().Secrets(ns).Get(ctx, orders.KeySecretName(), metav1.GetOptions{})
		if err != nil || after.UID != key.UID || after.ResourceVersion != key.ResourceVersion {
			t.Errorf("the key changed: %+v, %v", after, err)
		}
	})
	t.Run("a foreign Secret of the key's name", func(t *testing.T) {
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: orders.KeySecretName()},
			Data: map[string][]byte{"key": make([]byte, 32)}}
		cs := fakekube.New(foreign)
		_, err := journal.Store{CS: cs}.BeginNew(ctx, newEntry())
		if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), orders.KeySecretName()) {
			t.Fatalf("BeginNew: err = %v, want a user error naming the secret", err)
		}
		got, err := cs.CoreV1().Secrets(ns).Get(ctx, orders.KeySecretName(), metav1.GetOptions{})
		if err != nil || !cmp.Equal(foreign.Data, got.Data) || len(got.Labels) != 0 {
			t.Errorf("the foreign Secret changed: %+v, %v", got, err)
		}
		if cms, _ := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); len(cms.Items) != 0 {
			t.Errorf("a journal was written: %v", cms.Items)
		}
	})
}
