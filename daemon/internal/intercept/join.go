package intercept

// A pod joins an intercept --no-restart: its agent is added (or reused),
// a tunnel opened to it, and the agent asked to intercept (connect); then
// the pod is marked (markJoined). The start connects to every pod at once
// and gathers them in batches (joins); the follower joins pods one sync
// at a time (joinAll).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// joinAll adds the agent to every pod at once, and fails if one fails.
func (f *follower) joinAll(ctx context.Context, pods []*corev1.Pod) error {
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, p := range pods {
		wg.Go(func() {
			if err := f.join(ctx, p); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// join makes sure pod p runs an intercept agent, opens a tunnel to it,
// asks it to intercept, and then marks the pod.
func (f *follower) join(ctx context.Context, p *corev1.Pod) error {
	l, err := f.connect(ctx, p)
	if err != nil || l == nil {
		return err
	}
	return f.markJoined(ctx, p, l)
}

// connect makes sure pod p runs an intercept agent, opens a tunnel to it
// and asks it to intercept: all but the mark. It returns no link when
// another join of p runs.
func (f *follower) connect(ctx context.Context, p *corev1.Pod) (*agent.Link, error) {
	f.mu.Lock()
	if f.joining[p.Name] {
		f.mu.Unlock()
		return nil, nil
	}
	f.joining[p.Name] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.joining, p.Name)
		f.mu.Unlock()
	}()

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ns := f.np.w.Namespace
	end := f.tl.Load().begin("ensure", p.Name)
	a, err := inspect.Ensure(cctx, f.cs, inspect.Request{Namespace: ns, Pod: p.Name, AgentImage: f.req.AgentImage,
		Job: agent.JobIntercept, Forward: [2]int{f.np.agentPort, f.np.appPort}, Args: f.agentArgs(), Early: true}, f.progress)
	end()
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.Name, err)
	}
	l, stored, err := f.dialUntilUp(cctx, a)
	if err != nil {
		return nil, err
	}
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	end = f.tl.Load().begin("direct", p.Name)
	err = f.t.useDirect(cctx, l, ip)
	end()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("pod %s: %w", p.Name, err)
	}
	if !f.req.RecordOnly {
		end = f.tl.Load().begin("intercept", p.Name)
		err := l.Agent().Intercept(cctx, f.t.spec)
		end()
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("intercept on pod %s: %w", p.Name, err)
		}
	}
	if err := stored(); err != nil {
		l.Close()
		return nil, err
	}
	if f.t.onLink != nil {
		f.t.onLink(cctx, p.Name, l)
	}
	go f.t.serve(p.Name, l)
	f.t.mu.Lock()
	if old := f.t.links[p.Name]; old != nil {
		old.Close()
	}
	f.t.links[p.Name] = l
	f.t.mu.Unlock()
	f.log.Info("agent intercepts (no restart)", "pod", p.Name, "agent", a.Container, "agentPort", f.np.agentPort, "path", l.Path())
	return l, nil
}

// markJoined marks pod p, whose agent answers over l: from here the
// Service may send the pod its traffic, until l drops (watch).
func (f *follower) markJoined(ctx context.Context, p *corev1.Pod, l *agent.Link) error {
	end := f.tl.Load().begin("mark", p.Name)
	err := f.mark(ctx, p)
	end()
	if err != nil {
		l.Close()
		return err
	}
	go f.watch(p.Name, l)
	return nil
}

// markAll marks the pods of joined at once.
func (f *follower) markAll(ctx context.Context, joined []joinResult) error {
	errs := make([]error, len(joined))
	var wg sync.WaitGroup
	for i, j := range joined {
		wg.Go(func() { errs[i] = f.markJoined(ctx, j.pod, j.link) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// joinResult is one pod's connect.
type joinResult struct {
	pod  *corev1.Pod
	link *agent.Link
	err  error
}

// joins are connects to the agents of several pods at once.
type joins struct {
	results  chan joinResult
	n        int // connects started
	received int // results received
}

// connectAll connects to the agent of every pod at once (connect); gather
// receives the results as they come.
func (f *follower) connectAll(ctx context.Context, pods []*corev1.Pod) *joins {
	j := &joins{results: make(chan joinResult, len(pods)), n: len(pods)}
	for _, p := range pods {
		go func() {
			l, err := f.connect(ctx, p)
			if err == nil && l == nil {
				err = fmt.Errorf("pod %s: joined twice at once", p.Name)
			}
			j.results <- joinResult{pod: p, link: l, err: err}
		}()
	}
	return j
}

// gather receives the results still to come: once the first of them has
// come, those that come within window of it (all when window < 0). It
// fails with the first error.
func (j *joins) gather(ctx context.Context, window time.Duration) ([]joinResult, error) {
	var (
		out      []joinResult
		deadline <-chan time.Time
	)
	for j.received < j.n {
		select {
		case r := <-j.results:
			j.received++
			if r.err != nil {
				return out, r.err
			}
			out = append(out, r)
			if len(out) == 1 && window >= 0 {
				t := time.NewTimer(window)
				defer t.Stop()
				deadline = t.C
			}
		case <-deadline:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// joinRest marks the pods of the connects still running as each comes,
// in the background; a connect that failed is logged, and the follower
// tries its pod again. Once ctx ends (stop), it marks no more: the
// tunnels those connects opened are the intercept's (connect), which
// leave and undo close.
func (f *follower) joinRest(ctx context.Context, j *joins) {
	defer close(f.restDone)
	defer f.tl.Store(nil)
	joined, rest := 0, j.n-j.received
	for ; j.received < j.n; j.received++ {
		r := <-j.results
		switch {
		case ctx.Err() != nil: // stopped: mark no more
		case r.err != nil:
			f.log.Warn("a pod did not join the intercept --no-restart: it stays out of the Service; tried again", "pod", r.pod.Name, "err", r.err)
			f.pokeAfter(retryAfter)
		default:
			if err := f.markJoined(ctx, r.pod, r.link); err != nil {
				f.log.Warn("a pod did not join the intercept --no-restart: it stays out of the Service; tried again", "pod", r.pod.Name, "err", err)
				f.pokeAfter(retryAfter)
				continue
			}
			joined++
		}
	}
	if tl := f.tl.Load(); tl != nil && ctx.Err() == nil {
		f.log.Info("intercept --no-restart: the other pods joined", "workload", f.np.w.String(), "joined", joined, "of", rest,
			"took", time.Since(tl.start), "timeline", tl.Spans())
	}
}

// drain waits for the connects still running (cancel their context
// first) and closes the tunnels they opened.
func (j *joins) drain() {
	for ; j.received < j.n; j.received++ {
		if r := <-j.results; r.link != nil {
			r.link.Close()
		}
	}
}

// agentArgs are the recording flags of a new agent: a recording's, or
// the defaults for an intercept, as a sidecar's. An ephemeral container
// has no memory limit; the agent holds itself to its recording budget
// (its Go memory limit is the budget + 24 MiB).
func (f *follower) agentArgs() []string {
	return f.req.RecordArgs
}
