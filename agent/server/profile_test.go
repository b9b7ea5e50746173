package server

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
)

// TestProfileThroughTunnel: a profile runs for the tunnel that started
// it: another tunnel can neither start a second one nor stop it; the
// profiles come back in pprof's (gzipped) format; a tunnel that ends
// drops its profile, so that the next tunnel may start one.
func TestProfileThroughTunnel(t *testing.T) {
	h := newHarness(t)
	first, c1, err := h.daemon(testToken, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, c2, err := h.daemon(testToken, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c1.StopProfile(ctx); !errors.Is(err, agent.ErrNotProfiling) {
		t.Errorf("stop before any start: %v, want ErrNotProfiling", err)
	}
	if err := c1.StartProfile(ctx, agent.ProfileRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := c2.StartProfile(ctx, agent.ProfileRequest{}); !errors.Is(err, agent.ErrProfiling) {
		t.Errorf("a second start from another tunnel: %v, want ErrProfiling", err)
	}
	if err := c1.StartProfile(ctx, agent.ProfileRequest{}); !errors.Is(err, agent.ErrProfiling) {
		t.Errorf("a second start from the same tunnel: %v, want ErrProfiling", err)
	}
	if _, err := c2.StopProfile(ctx); !errors.Is(err, agent.ErrNotProfiling) {
		t.Errorf("stop from another tunnel: %v, want ErrNotProfiling", err)
	}
	for range 20 {
		h.get() // something to sample
	}
	p, err := c1.StopProfile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cpu": p.CPU, "block": p.Block, "mutex": p.Mutex, "heap": p.Heap} {
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Errorf("the %s profile is not a gzipped pprof profile (%d bytes)", name, len(b))
		}
	}
	if _, err := c1.StopProfile(ctx); !errors.Is(err, agent.ErrNotProfiling) {
		t.Errorf("stop twice: %v, want ErrNotProfiling", err)
	}

	if err := c1.StartProfile(ctx, agent.ProfileRequest{}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	for tries := 0; ; tries++ {
		err := c2.StartProfile(ctx, agent.ProfileRequest{})
		if err == nil {
			break
		}
		if !errors.Is(err, agent.ErrProfiling) || tries == 500 {
			t.Fatalf("after the first tunnel ended: %v, want its profile dropped", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c2.StopProfile(ctx); err != nil {
		t.Error(err)
	}
}
