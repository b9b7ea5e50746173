package intercept

import (
	"context"
	"sync"
	"time"
)

// ReleaseTimeout bounds a pinned rollout's release after its intercept
// returned: the old pods' going (10 s at most), the selector and the
// journal.
const ReleaseTimeout = 30 * time.Second

// Releases are the pinned rollouts a daemon sets back after their
// intercepts returned (pin.go: releaseSelector). A rollback of the same
// workload, and the daemon's stop, wait for them. Safe for concurrent
// use; the zero value is ready.
type Releases struct {
	mu      sync.Mutex
	running map[string]chan struct{} // by KeepKey
}

// start runs release in the background under key, with a context of its
// own (the intercept's request has ended) bounded by ReleaseTimeout.
func (r *Releases) start(key string, release func(ctx context.Context)) {
	done := make(chan struct{})
	r.mu.Lock()
	if r.running == nil {
		r.running = map[string]chan struct{}{}
	}
	prev := r.running[key]
	r.running[key] = done
	r.mu.Unlock()
	go func() {
		defer close(done)
		if prev != nil {
			<-prev // one release of a workload at a time
		}
		ctx, cancel := context.WithTimeout(context.Background(), ReleaseTimeout)
		defer cancel()
		release(ctx)
		r.mu.Lock()
		if r.running[key] == done {
			delete(r.running, key)
		}
		r.mu.Unlock()
	}()
}

// Wait returns once the release under key (every release when key is
// empty) has ended, or ctx has.
func (r *Releases) Wait(ctx context.Context, key string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	var waits []chan struct{}
	for k, done := range r.running {
		if key == "" || k == key {
			waits = append(waits, done)
		}
	}
	r.mu.Unlock()
	waitAll(ctx, waits)
}

// waitAll returns once every channel of chans is closed, or ctx ended.
func waitAll(ctx context.Context, chans []chan struct{}) {
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}
