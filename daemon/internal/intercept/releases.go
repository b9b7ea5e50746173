package intercept

import (
	"context"
	"fmt"
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

// release sets back what held the Service during a pinned rollout. With
// m.Releases, the settings go back (the old pods may go) and the journal's
// Pin is marked releasing before the return, and the selector, which must
// wait for the old pods to be going (50-350 ms here), goes back after it:
// a pod picked of the workload meanwhile is a new one (trace.PickPod
// prefers them), and another intercept waits for the Pin to clear
// (refuseNoRestartJournal). Without, all of it before the return.
func (m *Manager) release(ctx context.Context, a *attempt, pn *pin, tl *timeline, progress func(string)) {
	warn := func(err error) {
		// The intercept works; what is left is journaled.
		progress(fmt.Sprintf("could not set back what held service/%s during the rollout (%v); `tether rollback %s` restores it", pn.j.Service, err, a.w))
		if m.Log != nil {
			m.Log.Warn("intercept: release the pinned rollout", "workload", a.w.String(), "err", err)
		}
	}
	if m.Releases == nil {
		if err := a.release(ctx, pn, tl); err != nil {
			warn(err)
		}
		return
	}
	if err := a.releaseBegin(ctx, pn, tl); err != nil {
		warn(err)
		return
	}
	m.Releases.start(KeepKey(a.w.Namespace, a.w.String()), func(ctx context.Context) {
		rtl := newTimeline()
		err := a.releaseSelector(ctx, pn, rtl)
		if m.Log == nil {
			return
		}
		if err != nil {
			m.Log.Warn("intercept: set back the pinned rollout's selector after the return; `tether rollback` restores it",
				"workload", a.w.String(), "err", err, "steps", rtl.String())
			return
		}
		m.Log.Info("pinned rollout released", "workload", a.w.String(), "took", time.Since(rtl.start), "steps", rtl.String())
	})
}
