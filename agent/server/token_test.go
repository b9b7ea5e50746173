package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/tunnel"
)

// clock is a settable time for the keyring.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) get() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// bootstrapHarness runs an inspection agent whose testToken is a bootstrap
// token good for a minute of the returned clock.
func bootstrapHarness(t *testing.T) (*harness, *clock) {
	t.Helper()
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.BootstrapTTL = time.Minute })
	clk := &clock{now: time.Now()}
	k := h.agent.keys
	k.mu.Lock()
	k.now, k.deadline = clk.get, clk.now.Add(time.Minute)
	k.mu.Unlock()
	return h, clk
}

func TestBootstrapTokenOpensOneTunnel(t *testing.T) {
	h, _ := bootstrapHarness(t)
	if _, _, err := h.daemon(testToken, 1); err != nil {
		t.Fatalf("first tunnel with the bootstrap token: %v", err)
	}
	if _, _, err := h.daemon(testToken, 1); !errors.Is(err, tunnel.ErrBadToken) {
		t.Fatalf("second tunnel with the bootstrap token: err = %v, want %v", err, tunnel.ErrBadToken)
	}
}

func TestBootstrapTokenExpires(t *testing.T) {
	h, clk := bootstrapHarness(t)
	clk.add(time.Minute)
	if _, _, err := h.daemon(testToken, 1); !errors.Is(err, tunnel.ErrBadToken) {
		t.Fatalf("tunnel with the expired bootstrap token: err = %v, want %v", err, tunnel.ErrBadToken)
	}
}

func TestRotatedTokenReplacesBootstrap(t *testing.T) {
	h, clk := bootstrapHarness(t)
	_, c, err := h.daemon(testToken, 1)
	if err != nil {
		t.Fatal(err)
	}
	rotated := []byte("rotated-token-0123456789abcdef")
	if err := c.Rotate(t.Context(), rotated); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	// The first tunnel goes on after the rotation.
	if _, err := c.Info(t.Context()); err != nil {
		t.Fatalf("Info on the bootstrap tunnel after Rotate: %v", err)
	}
	clk.add(time.Hour) // the rotated token does not expire
	for i := range 2 {
		if _, c2, err := h.daemon(rotated, 1); err != nil {
			t.Fatalf("tunnel %d with the rotated token: %v", i, err)
		} else if _, err := c2.Info(t.Context()); err != nil {
			t.Fatalf("Info: %v", err)
		}
	}
	if _, _, err := h.daemon(testToken, 1); !errors.Is(err, tunnel.ErrBadToken) {
		t.Fatalf("tunnel with the bootstrap token after Rotate: err = %v, want %v", err, tunnel.ErrBadToken)
	}
	if err := c.Rotate(t.Context(), []byte("short")); !errors.Is(err, agent.ErrBadToken) {
		t.Fatalf("Rotate to a short token: err = %v, want %v", err, agent.ErrBadToken)
	}
}

func TestFixedTokenIsNotRotated(t *testing.T) {
	h := newHarness(t)
	_, c, err := h.daemon(testToken, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(t.Context(), []byte("rotated-token-0123456789abcdef")); !errors.Is(err, agent.ErrFixedToken) {
		t.Fatalf("Rotate on a sidecar agent: err = %v, want %v", err, agent.ErrFixedToken)
	}
	if _, _, err := h.daemon(testToken, 1); err != nil {
		t.Fatalf("a fixed token opens any number of tunnels: %v", err)
	}
}

// TestBootstrapTokenRace: of tunnels opened at once with the bootstrap
// token, exactly one serves calls; the others are refused in the
// handshake, or closed right after it.
func TestBootstrapTokenRace(t *testing.T) {
	h, _ := bootstrapHarness(t)
	const n = 6
	served := make(chan bool, n)
	for range n {
		go func() {
			_, c, err := h.daemon(testToken, 1)
			if err != nil {
				served <- false
				return
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, err = c.Info(ctx)
			served <- err == nil
		}()
	}
	count := 0
	for range n {
		if <-served {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d tunnels opened with the bootstrap token serve calls, want 1", count)
	}
}
