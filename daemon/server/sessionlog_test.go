package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestSessionLog(t *testing.T) {
	ctx := context.Background()
	d, cs := fakeCluster(t, access.Rule{})
	run := &daemon.ReproduceRecord{Workload: "orders", To: "cluster", Count: 10, Recurred: 10, Answers: 10}

	// No session: the reason a client tells apart, exit 2.
	_, err := d.SessionLog(ctx, daemon.SessionLogRequest{Namespace: "shop", Append: &daemon.SessionEvent{Kind: daemon.EventReproduce, Reproduce: run}})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), "namespace shop has no session") {
		t.Fatalf("no session: %v", err)
	}
	if !errors.Is(errdefs.FromGRPC(errdefs.ToGRPC(err), daemon.ErrNoSession), daemon.ErrNoSession) {
		t.Errorf("across the wire, no session is not daemon.ErrNoSession: %v", err)
	}

	withSession(t, d)
	got, err := d.SessionLog(ctx, daemon.SessionLogRequest{Namespace: "shop", Append: &daemon.SessionEvent{Kind: daemon.EventReproduce, Reproduce: run}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != 1 || got.Events[0].Reproduce.Recurred != 10 || got.Events[0].At.IsZero() || got.Events[0].By == "" || got.Session.Name != "s" {
		t.Errorf("log after one run: %+v", got)
	}
	// Clients log reproduce runs only; rollbacks are the daemon's.
	_, err = d.SessionLog(ctx, daemon.SessionLogRequest{Namespace: "shop", Append: &daemon.SessionEvent{Kind: daemon.EventRollback}})
	if !errors.Is(err, errdefs.ErrUser) {
		t.Errorf("a client's rollback event: %v", err)
	}

	// A user who may not update Secrets is told which one and which right.
	cs.PrependReactor("update", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "tether-session-log", errors.New("no"))
	})
	_, err = d.SessionLog(ctx, daemon.SessionLogRequest{Namespace: "shop", Append: &daemon.SessionEvent{Kind: daemon.EventReproduce, Reproduce: run}})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), "you may not create and update secret/tether-session-log in shop") {
		t.Errorf("forbidden: %v", err)
	}
	got, err = d.SessionLog(ctx, daemon.SessionLogRequest{Namespace: "shop"})
	if err != nil || len(got.Events) != 1 {
		t.Errorf("the log after a refused append: %+v, %v", got, err)
	}
}
