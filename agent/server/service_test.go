package server

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/tunnel"
)

// pipeSession returns the agent's side of a live tunnel over a pipe.
func pipeSession(t testing.TB) *tunnel.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := net.Pipe()
	peer := make(chan *tunnel.Session, 1)
	go func() {
		s, err := tunnel.Client(ctx, b, tunnel.DefaultConfig(testToken))
		if err != nil {
			t.Error(err)
		}
		peer <- s
	}()
	sess, err := tunnel.Server(ctx, a, tunnel.DefaultConfig(testToken))
	if err != nil {
		t.Fatal(err)
	}
	p := <-peer
	t.Cleanup(func() {
		sess.Close()
		if p != nil {
			p.Close()
		}
	})
	return sess
}

// TestInterceptClaimIsAtomic: of many tunnels claiming a free port at
// once, exactly one gets it and every other sees ErrAlreadyIntercepted.
// Run with -race.
func TestInterceptClaimIsAtomic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Token = testToken
	cfg.Forwards = []agent.Forward{{ListenPort: 18080, AppPort: 8080}}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	sessions := make([]*tunnel.Session, n)
	for i := range sessions {
		sessions[i] = pipeSession(t)
	}
	for round := 0; round < 100; round++ {
		a.releaseAll()
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, sess := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = (&sessionService{agent: a, sess: sess}).Intercept(context.Background(), agent.InterceptSpec{ListenPort: 18080})
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
				if got, _ := a.routeOf(18080); got != sessions[i] {
					t.Fatalf("round %d: tunnel %d won but the port is held by another", round, i)
				}
			case !errors.Is(err, agent.ErrAlreadyIntercepted):
				t.Fatalf("round %d: tunnel %d: %v, want ErrAlreadyIntercepted", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d tunnels hold the port, want 1", round, won)
		}
	}
}

// releaseAll ends every intercept (tests only).
func (a *Agent) releaseAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.ports)
}
