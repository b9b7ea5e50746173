package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

// After this daemon's sidecar intercept of a workload ends (leave), or
// its agents were put in to record, the daemon watches the agents: once
// none has been intercepted for its idle time (--record-idle, 30 minutes
// by default, after which it also stops recording), it points the
// Service back at the app and leaves the agents in the pods
// (intercept.Manager.StepAside). The watch ends with that, with the next
// intercept of the workload by this daemon, its rollback, or the daemon.

const (
	// asideFirstLook is how soon after leave the agents are first asked.
	asideFirstLook = 2 * time.Second
	// asideRetry is how soon they are asked again after a refusal (an
	// intercept of another daemon, an agent not reachable).
	asideRetry = time.Minute
)

// asideWatches are the watches running, by workload key.
type asideWatches struct {
	mu     sync.Mutex
	cancel map[string]context.CancelFunc
	wg     sync.WaitGroup
}

// watchAside starts watching w's agents (again).
func (d *Daemon) watchAside(w journal.Workload) {
	key := w.Namespace + "/" + w.String()
	ctx, cancel := context.WithCancel(context.Background())
	a := &d.asides
	a.mu.Lock()
	if a.cancel == nil {
		a.cancel = map[string]context.CancelFunc{}
	}
	if old := a.cancel[key]; old != nil {
		old()
	}
	a.cancel[key] = cancel
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		defer a.forget(key, ctx)
		wait := asideFirstLook
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			var done bool
			wait, done = d.tryAside(ctx, w)
			if done {
				return
			}
		}
	}()
}

// forget drops key's watch if it is still the one of ctx.
func (a *asideWatches) forget(key string, ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ctx.Err() == nil { // ended by itself: no newer watch replaced it
		a.cancel[key]()
		delete(a.cancel, key)
	}
}

// stop ends key's watch.
func (a *asideWatches) stop(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.cancel[key]; c != nil {
		c()
		delete(a.cancel, key)
	}
}

// stopAll ends every watch and waits for them.
func (a *asideWatches) stopAll() {
	a.mu.Lock()
	for key, c := range a.cancel {
		c()
		delete(a.cancel, key)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// tryAside asks w's agents whether they are all idle for their idle time
// and, when they are, steps them aside. It returns when to look again,
// or done.
func (d *Daemon) tryAside(ctx context.Context, w journal.Workload) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ref := w.String()
	_, targets, err := d.workloadAgents(ctx, w.Namespace, ref)
	if err != nil || len(targets) == 0 {
		d.log.Debug("agents idle? not asked", "workload", w.Namespace+"/"+ref, "err", err)
		return asideRetry, ctx.Err() != nil
	}
	agents := map[string]intercept.Asider{}
	var due time.Time
	for _, t := range targets {
		l := d.kept.Link(intercept.KeepKey(w.Namespace, ref), t.pod.Name)
		if l == nil {
			own, err := d.agentLink(ctx, w.Namespace, t.pod.Name, t.port, t.token)
			if err != nil {
				d.log.Debug("agents idle? not reached", "pod", t.pod.Name, "err", err)
				return asideRetry, false
			}
			defer own.Close()
			l = own
		}
		info, err := l.Agent().Info(ctx)
		switch {
		case err != nil:
			return asideRetry, false
		case info.Passive != nil:
			// It records callers from their packets: aside at once, also
			// while mirrors copy from them (StepAside refuses while any
			// other intercept runs).
		case info.IdleSince.IsZero():
			return asideRetry, false // intercepted (another daemon's): its leave starts the idle time
		case info.RecordIdle <= 0:
			return 0, true // --record-idle 0: the agent stays in the path
		default:
			// The agent's clock may differ from this one's: never wait
			// longer than its idle time, and StepAside decides.
			if at := info.IdleSince.Add(info.RecordIdle); at.After(due) {
				due = at
			}
			if max := time.Now().Add(info.RecordIdle); due.After(max) {
				due = max
			}
		}
		agents[t.pod.Name] = l.Agent()
	}
	if wait := time.Until(due); wait > 0 {
		return wait + 500*time.Millisecond, false
	}
	m := &intercept.Manager{CS: d.cs, Log: d.log}
	changed, err := m.StepAside(ctx, w, agents)
	switch {
	case errors.Is(err, intercept.ErrAgentsBusy):
		d.log.Debug("agents not stepping aside", "workload", w.Namespace+"/"+ref, "err", err)
		return asideRetry, false
	case err != nil:
		d.log.Warn("agents not stepped aside", "workload", w.Namespace+"/"+ref, "err", err)
		return asideRetry, false
	}
	if len(changed) > 0 {
		d.log.Info("idle agents stepped aside: the Service sends to the app", "workload", w.Namespace+"/"+ref, "services", changed)
	}
	return 0, true
}

// agentIdleArgs are the agent flags for an intercept's --agent-idle.
func agentIdleArgs(idle time.Duration) []string {
	if idle <= 0 {
		return nil
	}
	return []string{"--record-idle", idle.String()}
}
