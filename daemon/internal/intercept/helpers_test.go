package intercept

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/journal"
)

func seedJournal(t *testing.T, cs *fake.Clientset, orig, applied corev1.PodTemplateSpec) {
	t.Helper()
	ctx := context.Background()
	s := journal.Store{CS: cs}
	if _, err := s.Begin(ctx, &journal.Entry{Workload: orders, Template: orig, Secret: "tether-agent-deployment-orders", CreatedAt: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tether-agent-deployment-orders", Labels: map[string]string{"tether.dev/agent-token": "true"}}, Data: map[string][]byte{"token": []byte("t0")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, orders, func(e *journal.Entry) error {
		e.AppliedTemplateHash = journal.Hash(applied)
		e.SecretUID = sec.UID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func loadJournal(t *testing.T, cs *fake.Clientset) *journal.Entry {
	e, err := journal.Store{CS: cs}.Load(context.Background(), orders)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func retargetCall(ctx context.Context, cs *fake.Clientset, from, to []corev1.ServicePort) ([]corev1.ServicePort, error) {
	return setPorts(ctx, cs, ns, "orders", from, to)
}
