package rollback_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

type runtimeObject = runtime.Object

func writeJournal(t *testing.T, ctx context.Context, cs *fake.Clientset, orig corev1.PodTemplateSpec, ports []corev1.ServicePort, plan inject.Plan) {
	s := journal.Store{CS: cs}
	_, err := s.Begin(ctx, &journal.Entry{Workload: orders, Template: orig, Secret: "tether-agent-deployment-orders", CreatedAt: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "tether-agent-deployment-orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, orders, func(e *journal.Entry) error {
		e.AppliedTemplateHash = journal.Hash(plan.Template)
		e.Services = map[string]journal.ServiceEntry{"orders": {Ports: ports, AppliedPortsHash: journal.Hash(plan.Service.Spec.Ports)}}
		e.SecretUID = sec.UID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
