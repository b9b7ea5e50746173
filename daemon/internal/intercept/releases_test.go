package intercept

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/journal"
)

// TestWaitPinReleased: an intercept that finds another's pin being
// released waits for it and reads again; one that stays past the wait,
// or was never marked releasing (its daemon stopped during the rollout),
// is refused with the way out.
func TestWaitPinReleased(t *testing.T) {
	defer func(d time.Duration) { pinReleaseWait = d }(pinReleaseWait)
	pinReleaseWait = 300 * time.Millisecond
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		releasing bool
		clear     bool
		want      string
	}{
		{"released meanwhile", true, true, ""},
		{"released too slowly", true, false, "run `tether rollback deployment/orders` first"},
		{"not releasing", false, true, "run `tether rollback deployment/orders` first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			s := journal.Store{CS: cs}
			pin := &journal.Pin{Service: "orders", Selector: map[string]string{"app": "orders"}, Label: pinLabel, Releasing: tc.releasing}
			if _, err := s.Begin(ctx, &journal.Entry{Workload: orders, Pin: pin}); err != nil {
				t.Fatal(err)
			}
			if tc.clear {
				go func() {
					time.Sleep(100 * time.Millisecond)
					if _, err := s.Update(ctx, orders, func(e *journal.Entry) error { e.Pin = nil; return nil }); err != nil {
						t.Error(err)
					}
				}()
			}
			err := refuseNoRestartJournal(ctx, cs, orders)
			switch {
			case tc.want == "" && !errors.Is(err, errPinReleased):
				t.Errorf("refuseNoRestartJournal() = %v, want errPinReleased", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("refuseNoRestartJournal() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestReleases: Wait returns once the release under its key (or every
// release) ended, and releases of one workload run one after another.
func TestReleases(t *testing.T) {
	var r Releases
	first, second := make(chan struct{}), make(chan struct{})
	var order []string
	r.start("ns/deployment/orders", func(context.Context) { <-first; order = append(order, "first") })
	r.start("ns/deployment/orders", func(context.Context) { order = append(order, "second"); close(second) })
	r.start("ns/deployment/other", func(context.Context) {})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	r.Wait(ctx, "ns/deployment/orders")
	cancel()
	if ctx.Err() == nil {
		t.Fatal("Wait returned while the first release was blocked")
	}
	select {
	case <-second:
		t.Fatal("the second release of the workload ran before the first ended")
	default:
	}
	close(first)
	r.Wait(context.Background(), "")
	select {
	case <-second:
	default:
		t.Fatal("Wait(\"\") returned before every release ended")
	}
	if strings.Join(order, ",") != "first,second" {
		t.Errorf("releases ran in the order %v", order)
	}
	var none *Releases
	none.Wait(context.Background(), "") // a daemon without releases
}
