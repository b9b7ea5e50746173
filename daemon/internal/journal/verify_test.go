package journal_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/internal/errdefs"
)

// TestLoadVerifies: Load returns the journal Begin wrote, and refuses, with
// an error naming the journal, every way of forging one without the key.
func TestLoadVerifies(t *testing.T) {
	ctx := context.Background()
	other := journal.Workload{Kind: "Deployment", Namespace: ns, Name: "payments"}
	for _, tc := range []struct {
		name   string
		forge  func(t *testing.T, cs *fake.Clientset)
		wantOK bool
	}{
		{"as written", func(*testing.T, *fake.Clientset) {}, true},
		{"content edited", func(t *testing.T, cs *fake.Clientset) {
			editCM(t, cs, func(cm *corev1.ConfigMap) {
				cm.Data["journal.json"] = strings.Replace(cm.Data["journal.json"], "orders:v1", "evil:v1", 1)
			})
		}, false},
		{"MAC removed", func(t *testing.T, cs *fake.Clientset) {
			editCM(t, cs, func(cm *corev1.ConfigMap) { delete(cm.Data, "journal.mac") })
		}, false},
		{"key deleted", func(t *testing.T, cs *fake.Clientset) {
			_ = cs.CoreV1().Secrets(ns).Delete(ctx, orders.KeySecretName(), metav1.DeleteOptions{})
		}, false},
		{"key replaced by a Secret that is not tether's", func(t *testing.T, cs *fake.Clientset) {
			_ = cs.CoreV1().Secrets(ns).Delete(ctx, orders.KeySecretName(), metav1.DeleteOptions{})
			_, _ = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: orders.KeySecretName()},
				Data: map[string][]byte{"key": make([]byte, 32)}}, metav1.CreateOptions{})
		}, false},
		{"another workload's journal copied over", func(t *testing.T, cs *fake.Clientset) {
			s := journal.Store{CS: cs}
			e := newEntry()
			e.Workload = other
			if _, err := s.Begin(ctx, e); err != nil {
				t.Fatal(err)
			}
			src, _ := cs.CoreV1().ConfigMaps(ns).Get(ctx, other.ConfigMapName(), metav1.GetOptions{})
			editCM(t, cs, func(cm *corev1.ConfigMap) { cm.Data = src.Data })
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fakekube.New()
			s := journal.Store{CS: cs}
			if _, err := s.Begin(ctx, newEntry()); err != nil {
				t.Fatal(err)
			}
			tc.forge(t, cs)
			got, err := s.Load(ctx, orders)
			if tc.wantOK {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(newEntry(), got, cmpopts.IgnoreUnexported(journal.Entry{})); diff != "" {
					t.Errorf("entry (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, journal.ErrTampered) || !strings.Contains(err.Error(), orders.ConfigMapName()) {
				t.Errorf("Load: err = %v, want ErrTampered naming the journal", err)
			}
			if _, err := s.Update(ctx, orders, func(*journal.Entry) error { return nil }); !errors.Is(err, journal.ErrTampered) {
				t.Errorf("Update: err = %v, want ErrTampered", err)
			}
		})
	}
}

// TestBeginKeepsFirst: a second Begin returns the journal the first wrote.
func TestBeginKeepsFirst(t *testing.T) {
	ctx := context.Background()
	s := journal.Store{CS: fakekube.New()}
	first, err := s.Begin(ctx, newEntry())
	if err != nil {
		t.Fatal(err)
	}
	later := newEntry()
	later.Template = fakekube.Template("orders", "orders:v9")
	second, err := s.Begin(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]bool{true, false}, []bool{first.Created(), second.Created()}); diff != "" {
		t.Errorf("Created (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(first.Template, second.Template); diff != "" {
		t.Errorf("template (-want +got):\n%s", diff)
	}
}

// TestDeleteIsConditional: deleting a journal read before another tether
// wrote to it fails, and removes nothing.
func TestDeleteIsConditional(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	e, err := s.Begin(ctx, newEntry())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, orders, func(e *journal.Entry) error { e.AppliedTemplateHash = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, e); !apierrors.IsConflict(err) {
		t.Fatalf("Delete of a stale entry: err = %v, want a conflict", err)
	}
	if got, err := s.Load(ctx, orders); err != nil || got == nil {
		t.Fatalf("journal after a refused delete: %v, %v", got, err)
	}
	fresh, _ := s.Load(ctx, orders)
	if err := s.Delete(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"delete configmaps/" + orders.ConfigMapName(), "delete secrets/" + orders.KeySecretName()},
		fakekube.Writes(cs)[len(fakekube.Writes(cs))-2:]); diff != "" {
		t.Errorf("last writes (-want +got):\n%s", diff)
	}
}

func editCM(t *testing.T, cs *fake.Clientset, edit func(*corev1.ConfigMap)) {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), orders.ConfigMapName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit(cm)
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteKeepsANewKey: Delete removes only the key its entry was
// verified with, not one made since (for a journal begun meanwhile).
func TestDeleteKeepsANewKey(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	s := journal.Store{CS: cs}
	if _, err := s.Begin(ctx, newEntry()); err != nil {
		t.Fatal(err)
	}
	e, err := s.Load(ctx, orders)
	if err != nil {
		t.Fatal(err)
	}
	_ = cs.CoreV1().Secrets(ns).Delete(ctx, orders.KeySecretName(), metav1.DeleteOptions{})
	_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: orders.KeySecretName(),
		Labels: map[string]string{journal.LabelJournalKey: "true"}}, Data: map[string][]byte{"key": make([]byte, 32)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, orders.KeySecretName(), metav1.GetOptions{}); err != nil {
		t.Errorf("the new key: %v", err)
	}
}

// TestBeginRefusesAForeignKeySecret: a Secret of the key's name that is not
// tether's is neither used nor overwritten.
func TestBeginRefusesAForeignKeySecret(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: orders.KeySecretName()},
		Data: map[string][]byte{"key": make([]byte, 32)}})
	_, err := journal.Store{CS: cs}.Begin(ctx, newEntry())
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), orders.KeySecretName()) {
		t.Fatalf("Begin: err = %v, want a user error naming the secret", err)
	}
	if diff := cmp.Diff([]string(nil), fakekube.Writes(cs)); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}
