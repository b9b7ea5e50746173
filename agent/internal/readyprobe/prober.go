package readyprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Request is one readiness check, run from one pod.
type Request struct {
	// Address is the Service's ClusterIP:port.
	Address string
	Nonce   Nonce
	// Expect names the pods whose agents must answer.
	Expect []string
	// Streak is how many connections in a row (by the order they
	// started), after the latest miss, must reach an expected agent: a
	// node whose rules still mix old endpoints with new ones is caught by
	// a miss in the streak. Default 24 per expected pod,
	// at most 128: one stale endpoint beside one new pod goes unseen by 24
	// connections with a chance of 6 in 100 million (8, the old default,
	// let 1 in 256 through, and a check makes several tries a second
	// while the rules are stale: `make test` met it about once a run),
	// beside 3 new pods by 72 with 1 in a billion.
	Streak int
	// Timeout bounds the check (default 10 s).
	Timeout time.Duration
	// Unreachable ends the check early when no connection at all could be
	// made for this long (default 2 s): something between this pod and
	// the Service drops the probe (a NetworkPolicy, no hairpin).
	Unreachable time.Duration
	// ConnTimeout bounds one connection: its dial, then the wait for an
	// answer (default 300 ms).
	ConnTimeout time.Duration
	// Pause is the wait after a connection that reached no expected agent
	// (default 20 ms), so an old app behind stale rules is not hammered.
	Pause time.Duration
	// Pace is how long the last connection started, while in flight,
	// holds the next one (default 10 ms); MaxInFlight bounds the
	// connections at once (default 16: while the rules still send half
	// the connections to a gone endpoint, one started every 10 ms keeps
	// about 15 waiting out their 300 ms, and the first connection after
	// kube-proxy's sync should find room).
	Pace        time.Duration
	MaxInFlight int
	// Burst is how many connections may be in flight at once without
	// Pace while the latest ones reached expected agents (default 8): once
	// the rules send connections to the agents, the rest of the streak
	// need not wait for one another. After a miss the check goes one at a
	// time again.
	Burst int
}

func (r *Request) defaults() {
	if r.Streak <= 0 {
		r.Streak = min(24*max(len(r.Expect), 1), 128)
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	if r.Unreachable <= 0 {
		r.Unreachable = 2 * time.Second
	}
	if r.ConnTimeout <= 0 {
		r.ConnTimeout = 300 * time.Millisecond
	}
	if r.Pause <= 0 {
		r.Pause = 20 * time.Millisecond
	}
	if r.Pace <= 0 {
		r.Pace = 10 * time.Millisecond
	}
	if r.MaxInFlight <= 0 {
		r.MaxInFlight = 16
	}
	if r.Burst <= 0 {
		r.Burst = 8
	}
	r.Burst = min(r.Burst, r.MaxInFlight)
}

// Result is what a check saw.
type Result struct {
	// Ready: every expected pod answered, and Streak connections in a row
	// started after the latest miss all reached expected agents.
	Ready bool
	// Answered counts answers by pod (expected or not).
	Answered map[string]int
	// Missed counts connections made that no expected agent answered (an
	// app behind stale rules, another pod's agent, a timeout); Failed
	// those that could not be made.
	Missed, Failed int
	Elapsed        time.Duration
	// LastError is the last connection's failure, for the user.
	LastError string
}

// Probe runs the check: new connections to req.Address, each sending the
// marker, until the result is ready, the time is up, or ctx ends (its
// error is returned with the result so far). The first connections go
// one after another; once they reach expected agents, up to Burst of the
// streak go at once. One that hangs (an endpoint that is gone) does not
// hold the next: after Pace another starts, up to MaxInFlight at once. The streak counts connections in the order they
// started: it is Streak consecutive ones answered by expected agents,
// none started after them missed. A connection that started before the
// streak and still hangs says only that the rules were stale when it
// started, which the streak since has shown they no longer are.
func Probe(ctx context.Context, req Request) (Result, error) {
	req.defaults()
	if _, _, err := net.SplitHostPort(req.Address); err != nil {
		return Result{}, fmt.Errorf("address %q: %w", req.Address, err)
	}
	if len(req.Expect) == 0 {
		return Result{}, errors.New("no pod to expect")
	}
	start := time.Now()
	res := Result{Answered: map[string]int{}}
	done := func(err error) (Result, error) {
		res.Elapsed = time.Since(start)
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the connections still in flight
	deadline := time.NewTimer(req.Timeout)
	defer deadline.Stop()

	type outcome struct {
		seq      int
		pod      string
		err      error
		timedOut bool // it took its whole ConnTimeout
	}
	results := make(chan outcome, req.MaxInFlight)
	inFlight, launched := 0, 0
	launch := func() {
		inFlight++
		launched++
		seq := launched
		go func() {
			t0 := time.Now()
			pod, err := probeOnce(ctx, req)
			results <- outcome{seq, pod, err, time.Since(t0) >= req.ConnTimeout}
		}()
	}
	var s streak
	connected := false
	var lastLaunch, notBefore time.Time // notBefore: after a miss, not hammering an app
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return done(ctx.Err())
		case <-deadline.C:
			return done(nil)
		case <-next.C:
		case o := <-results:
			inFlight--
			good := false
			switch {
			case o.err == nil:
				connected = true
				res.Answered[o.pod]++
				if good = slices.Contains(req.Expect, o.pod); !good {
					res.Missed++
				}
			case errors.Is(o.err, errNotConnected):
				res.Failed++
				res.LastError = o.err.Error()
			default:
				connected = true
				res.Missed++
				res.LastError = o.err.Error()
			}
			if s.add(o.seq, good) && !o.timedOut {
				// A quick miss that is news (none started later was
				// answered): an app behind stale rules is not hammered.
				// A connection that timed out has waited long enough.
				notBefore = time.Now().Add(req.Pause)
			}
			if s.run >= req.Streak && allAnswered(res.Answered, req.Expect) {
				res.Ready = true
				return done(nil)
			}
		}
		if !connected && time.Since(start) >= req.Unreachable {
			return done(nil)
		}
		// The next connections: at once when the last one started has
		// ended, or while a run of answers grows and fewer than Burst are
		// in flight (as many as the streak still needs); else Pace after
		// the last one started. Never before a miss's pause ends.
		now := time.Now()
		for inFlight < req.MaxInFlight { // else a result comes within ConnTimeout
			at := now
			burst := s.run > 0 && inFlight < req.Burst && s.run+inFlight < req.Streak
			if s.pending(launched) && !burst {
				at = lastLaunch.Add(req.Pace)
			}
			if notBefore.After(at) {
				at = notBefore
			}
			if now.Before(at) {
				next.Reset(at.Sub(now))
				break
			}
			launch()
			lastLaunch = now
		}
	}
}

// streak follows the probe connections' results by the order they
// started (seq, from 1): run is the longest row of consecutive
// connections answered by expected agents that began after the last one
// that missed.
type streak struct {
	lastBad  int          // the latest-started connection that missed
	lastGood int          // the latest-started one answered
	good     map[int]bool // answered, started after lastBad
	run      int
}

// add records connection seq's result; it says whether it is a miss that
// is news: none started after it was answered.
func (s *streak) add(seq int, good bool) (newMiss bool) {
	if s.good == nil {
		s.good = map[int]bool{}
	}
	if !good {
		if seq > s.lastBad {
			s.lastBad = seq
			for k := range s.good {
				if k < seq {
					delete(s.good, k)
				}
			}
		}
		s.run = s.longest()
		return seq > s.lastGood
	}
	s.lastGood = max(s.lastGood, seq)
	if seq > s.lastBad {
		s.good[seq] = true
	}
	s.run = s.longest()
	return false
}

func (s *streak) longest() int {
	best, cur := 0, 0
	for k := s.lastBad + 1; k <= s.lastGood; k++ {
		if s.good[k] {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// pending says whether the last connection started (seq launched) has
// not ended yet.
func (s *streak) pending(launched int) bool {
	return launched > max(s.lastBad, s.lastGood)
}

var errNotConnected = errors.New("not connected")

// probeOnce makes one probe connection and returns the pod that answered.
func probeOnce(ctx context.Context, req Request) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, req.ConnTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", req.Address)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNotConnected, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(Marker(req.Nonce)); err != nil {
		return "", err
	}
	return ReadAnswer(c, req.Nonce)
}

func allAnswered(got map[string]int, want []string) bool {
	for _, p := range want {
		if got[p] == 0 {
			return false
		}
	}
	return true
}
