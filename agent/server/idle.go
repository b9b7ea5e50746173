package server

import (
	"sync"
	"time"
)

// DefaultRecordIdle is how long an agent records while nothing intercepts
// it before it pauses recording (--record-idle).
const DefaultRecordIdle = 30 * time.Minute

// idleClock knows whether something intercepts one of the agent's ports,
// and since when nothing has: an agent nobody uses stops recording after
// Record.Idle, and then forwards its callers' bytes without looking at
// them (spliced). Tunnels that only read (status, requests, replays) do
// not count.
type idleClock struct {
	now func() time.Time

	mu    sync.Mutex
	busy  bool
	since time.Time   // the last intercept's end, or the start
	timer *time.Timer // says when recording pauses
}

func newIdleClock(now func() time.Time) *idleClock {
	return &idleClock{now: now, since: now()}
}

// set records whether something intercepts now; when that ends, the idle
// time starts and paused runs once it reaches after (when positive).
func (c *idleClock) set(busy bool, after time.Duration, paused func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if busy == c.busy {
		return
	}
	c.busy = busy
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if !busy {
		c.since = c.now()
		c.armLocked(after, paused)
	}
}

// start arms the first pause, counted from the agent's start.
func (c *idleClock) start(after time.Duration, paused func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked(after, paused)
}

func (c *idleClock) armLocked(after time.Duration, paused func()) {
	if after <= 0 || paused == nil || c.busy {
		return
	}
	c.timer = time.AfterFunc(after, paused)
}

// idleSince is when the agent became idle; zero while something
// intercepts.
func (c *idleClock) idleSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy {
		return time.Time{}
	}
	return c.since
}

// idleFor reports whether the agent has been idle for at least d.
func (c *idleClock) idleFor(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.busy && c.now().Sub(c.since) >= d
}

// recording reports whether the agent records now: it has a recorder and
// is not paused (idle for Record.Idle or longer).
func (a *Agent) recording() bool {
	if a.ring == nil {
		return false
	}
	idle := a.cfg.Record.Idle
	return idle <= 0 || !a.idle.idleFor(idle)
}

// noteIntercepts tells the idle clock whether any port is intercepted;
// a.mu held.
func (a *Agent) noteIntercepts() {
	busy := false
	for _, p := range a.ports {
		if len(p.list) > 0 {
			busy = true
			break
		}
	}
	a.idle.set(busy, a.cfg.Record.Idle, a.logPaused)
}

// logPaused says recording paused (when the agent records at all).
func (a *Agent) logPaused() {
	if a.ring != nil {
		a.log.Info("recording paused: nothing intercepted for a while; the next intercept resumes it", "idle", a.cfg.Record.Idle)
	}
}
