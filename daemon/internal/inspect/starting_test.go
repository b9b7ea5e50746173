package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/tunnel"
)

// TestUntilUp: tries until one works; a refused token ends it at once, a
// time limit after the last try's error.
func TestUntilUp(t *testing.T) {
	cs := fake.NewClientset()
	a := inspect.Agent{Pod: "orders-1", Container: "tether-agent"}
	calls := 0
	tries, err := inspect.UntilUp(t.Context(), cs, "shop", a, time.Minute, func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("read handshake reply: EOF")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("UntilUp = %d tries, %v; want 3, nil", tries, err)
	}
	tries, err = inspect.UntilUp(t.Context(), cs, "shop", a, time.Minute, func(context.Context) error {
		return fmt.Errorf("tunnel: %w", tunnel.ErrBadToken)
	})
	if !errors.Is(err, tunnel.ErrBadToken) || tries != 1 {
		t.Errorf("UntilUp = %d tries, %v; want 1, the refused token", tries, err)
	}
	last := errors.New("connection refused")
	tries, err = inspect.UntilUp(t.Context(), cs, "shop", a, 250*time.Millisecond, func(context.Context) error { return last })
	if err != last || tries < 2 || tries > 5 {
		t.Errorf("UntilUp = %d tries, %v; want about 3, the last error", tries, err)
	}
}
