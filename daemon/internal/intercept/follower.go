package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/internal/portforward"
	"github.com/tetherkube/tether/tunnel"
)

// follower keeps an intercept --no-restart: an ephemeral agent in every
// ready pod of the workload, a tunnel to each, and the mark on exactly the
// pods whose agent answers. A pod added later gets its agent and mark; a
// pod whose tunnel drops loses its mark at once (so the Service stops
// sending it traffic), and gets it back when its agent answers again. A
// pod whose agent died gets no new one while the intercept runs.
type follower struct {
	cs       kubernetes.Interface
	dialer   Dialer
	log      *slog.Logger
	progress func(string)
	req      Request
	np       *noRestartPlan
	t        *tunnels
	// tl times the start's steps; nil once the start is over.
	tl *timeline

	// jmu serializes this intercept's journal writes; journaled holds the
	// pods whose mark the journal holds (by UID), svcJournaled whether it
	// holds the Service.
	jmu          sync.Mutex
	journaled    map[string]types.UID
	svcJournaled bool

	mu      sync.Mutex
	marks   map[string]bool // the pods marked now
	joining map[string]bool
	dead    map[string]bool // pods whose agent died, told once
	cancel  context.CancelFunc
	done    chan struct{}
	// changed wakes the follow loop (follow.go): a pod changed, or a
	// tunnel dropped.
	changed chan struct{}
}

func (m *Manager) newFollower(req Request, np *noRestartPlan) *follower {
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := m.Progress
	if progress == nil {
		progress = func(string) {}
	}
	path := req.Path
	if path == "" {
		path = agent.PathAuto
	}
	if path == agent.PathAuto && m.Paths == nil {
		path = agent.PathPortForward
	}
	spec := agent.InterceptSpec{ListenPort: np.agentPort, ID: req.ID, Owner: req.Owner, Filter: req.Filter, Mirror: req.Mirror}
	t := newTunnels(m.CS, m.Dialer, log, np.w.Namespace, "", nil, spec, req.LocalPort)
	t.path, t.chooser, t.onLink = path, m.Paths, m.OnLink
	return &follower{cs: m.CS, dialer: m.Dialer, log: log, progress: progress, req: req, np: np, t: t,
		marks: map[string]bool{}, joining: map[string]bool{}, dead: map[string]bool{}, journaled: map[string]types.UID{}, changed: make(chan struct{}, 1)}
}

// journal changes the intercept's journal, one write at a time.
func (f *follower) journal(ctx context.Context, change func(*journal.Entry) error) error {
	f.jmu.Lock()
	defer f.jmu.Unlock()
	_, err := journal.Store{CS: f.cs}.Update(ctx, f.np.w, change)
	return err
}

// journaledAll notes that the journal was begun with the Service and the
// marks of every planned pod (noRestartPlan.entry).
func (f *follower) journaledAll() {
	f.jmu.Lock()
	defer f.jmu.Unlock()
	f.svcJournaled = true
	for _, p := range f.np.pods {
		f.journaled[p.Name] = p.UID
	}
}

// marked returns the pods marked now.
func (f *follower) marked() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.marks))
	for k := range f.marks {
		out[k] = true
	}
	return out
}

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
	end := f.tl.begin("ensure", p.Name)
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
	end = f.tl.begin("direct", p.Name)
	err = f.t.useDirect(cctx, l, ip)
	end()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("pod %s: %w", p.Name, err)
	}
	if !f.req.RecordOnly {
		end = f.tl.begin("intercept", p.Name)
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
	end := f.tl.begin("mark", p.Name)
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

// dialUntilUp opens a tunnel to agent a, trying again every dialEvery
// while its container starts (the kubelet reports it running a second or
// more after it does: dialing is quicker), and fails with the kubelet's
// reason once the container is reported failed. Each try's API
// connection is opened ahead (agentDialer).
func (f *follower) dialUntilUp(ctx context.Context, a inspect.Agent) (*agent.Link, func() error, error) {
	ns := f.np.w.Namespace
	ad := &agentDialer{d: f.dialer, ns: ns, pod: a.Pod, port: a.Port}
	defer ad.close()
	start, checked := time.Now(), time.Time{}
	for tries := 1; ; tries++ {
		try := time.Now()
		l, stored, err := f.link(ctx, a, ad)
		if err == nil {
			f.tl.between("wait-agent", a.Pod, start, try)
			f.log.Info("agent answers", "pod", a.Pod, "agent", a.Container, "tries", tries, "took", time.Since(start))
			return l, stored, nil
		}
		f.log.Debug("agent does not answer yet", "pod", a.Pod, "try", tries, "took", time.Since(try), "err", err)
		if a.Bootstrap && errors.Is(err, tunnel.ErrBadToken) {
			return nil, nil, inspect.Explain(ctx, f.cs, a, ns, err) // another tether used the bootstrap token first
		}
		if time.Since(checked) >= time.Second {
			if ferr := inspect.Failed(ctx, f.cs, ns, a); ferr != nil {
				return nil, nil, ferr
			}
			checked = time.Now()
		}
		if time.Since(start) >= time.Minute {
			return nil, nil, inspect.Explain(ctx, f.cs, a, ns, err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("agent %s of pod %s: %w (last: %v)", a.Container, a.Pod, ctx.Err(), err)
		case <-time.After(dialEvery):
		}
	}
}

// dialEvery is how often dialUntilUp tries an agent that is starting.
const dialEvery = 50 * time.Millisecond

// podConnector opens API connections to a pod's port-forward ahead of
// the connections they carry (portforward.Dialer).
type podConnector interface {
	Connect(ctx context.Context, namespace, pod string) (*portforward.PodConn, error)
}

// agentDialer dials one agent's port, again and again while it starts.
// When the dialer can, each try's API connection (TLS, the upgrade, the
// API server's connection to the kubelet: 20-200 ms on a loaded machine)
// is opened while the try before runs and the wait after it, so the try
// that works is two new streams.
type agentDialer struct {
	d       Dialer
	ns, pod string
	port    int
	next    chan pendingConn // the next try's API connection, being opened
}

type pendingConn struct {
	pc  *portforward.PodConn
	err error
}

func (ad *agentDialer) dial(ctx context.Context) (net.Conn, error) {
	pcr, ok := ad.d.(podConnector)
	if !ok {
		return ad.d.DialPod(ctx, ad.ns, ad.pod, ad.port)
	}
	if ad.next == nil {
		ad.prepare(ctx, pcr)
	}
	var r pendingConn
	select {
	case r = <-ad.next:
	case <-ctx.Done():
		return nil, ctx.Err() // close drains it
	}
	ad.prepare(ctx, pcr) // the next try's
	if r.err != nil {
		return nil, r.err
	}
	return r.pc.Dial(ad.port)
}

// prepare opens the next try's API connection.
func (ad *agentDialer) prepare(ctx context.Context, pcr podConnector) {
	ch := make(chan pendingConn, 1)
	ad.next = ch
	go func() {
		pc, err := pcr.Connect(ctx, ad.ns, ad.pod)
		ch <- pendingConn{pc, err}
	}()
}

// close closes the API connection opened for a try that will not come.
func (ad *agentDialer) close() {
	if ch := ad.next; ch != nil {
		ad.next = nil
		go func() {
			if r := <-ch; r.pc != nil {
				r.pc.Close()
			}
		}()
	}
}

// link opens a tunnel to agent a and, for a new agent, replaces its
// bootstrap token (in the pod's spec) by one kept in a Secret the pod
// owns. The Secret is created while the caller goes on: stored says
// when it is (the caller waits for it before it marks the pod).
func (f *follower) link(ctx context.Context, a inspect.Agent, ad *agentDialer) (l *agent.Link, stored func() error, err error) {
	t0 := time.Now()
	c, err := ad.dial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reach the agent of pod %s: %w", a.Pod, err)
	}
	t1 := time.Now()
	cfg := tunnel.DefaultConfig(a.Token)
	cfg.Logger = f.log
	l, err = agent.Connect(ctx, c, cfg)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("tunnel to pod %s: %w", a.Pod, err)
	}
	t2 := time.Now()
	f.tl.between("dial", a.Pod, t0, t1)
	f.tl.between("handshake", a.Pod, t1, t2)
	if !a.Bootstrap {
		return l, func() error { return nil }, nil
	}
	token := inspect.NewToken()
	if err := l.Rotate(ctx, token); err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("agent %s of pod %s: %w", a.Container, a.Pod, err)
	}
	t3 := time.Now()
	f.tl.between("rotate", a.Pod, t2, t3)
	errc := make(chan error, 1)
	go func() {
		err := inspect.StoreToken(ctx, f.cs, f.np.w.Namespace, a, token)
		f.tl.between("secret", a.Pod, t3, time.Now())
		errc <- err
	}()
	return l, func() error { return <-errc }, nil
}

// mark journals the pod's label as it is (unless the journal holds it),
// then sets it to the intercept's mark, on that pod (its UID) as read.
func (f *follower) mark(ctx context.Context, p *corev1.Pod) error {
	ns := f.np.w.Namespace
	f.jmu.Lock()
	journaled := f.journaled[p.Name] == p.UID
	f.jmu.Unlock()
	if !journaled {
		err := f.journal(ctx, func(e *journal.Entry) error {
			if e.Marks == nil {
				e.Marks = map[string]journal.Mark{}
			}
			if old, ok := e.Marks[p.Name]; ok && old.UID == p.UID {
				return nil // marked before (a tunnel that dropped and came back): the original stays
			}
			e.Marks[p.Name] = f.np.markOf(p)
			return nil
		})
		if err != nil {
			return fmt.Errorf("journal the mark of pod %s: %w", p.Name, err)
		}
		f.jmu.Lock()
		f.journaled[p.Name] = p.UID
		f.jmu.Unlock()
	}
	// One patch: its UID is a precondition (the API server refuses to
	// change a UID), so a pod replaced by one of the same name is not
	// marked.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": p.UID, "labels": map[string]string{MarkLabel: f.np.mark}}})
	if err != nil {
		return err
	}
	_, err = f.cs.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "tether"})
	if err != nil {
		return fmt.Errorf("mark pod %s: %w", p.Name, err)
	}
	f.mu.Lock()
	f.marks[p.Name] = true
	f.mu.Unlock()
	return nil
}

// unmark removes the intercept's mark from the pod, if it is still there.
func (f *follower) unmark(ctx context.Context, pod string) error {
	f.mu.Lock()
	delete(f.marks, pod)
	f.mu.Unlock()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := f.cs.CoreV1().Pods(f.np.w.Namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Labels[MarkLabel] != f.np.mark {
			return nil
		}
		delete(cur.Labels, MarkLabel)
		_, err = f.cs.CoreV1().Pods(f.np.w.Namespace).Update(ctx, cur, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// watch takes the pod out of the Service as soon as its tunnel l drops
// (the agent died, or the connection to it), unless the follower has
// replaced l or stopped meanwhile.
func (f *follower) watch(pod string, l *agent.Link) {
	for gone := false; !gone; {
		select {
		case <-l.Done():
			gone = true
		case <-l.DirectDone():
			// The direct connection ended at once: the agent died (its
			// port-forward session would tell only by its dead-peer check,
			// about a second later), or just the network path did. Ask.
			ctx, cancel := context.WithTimeout(context.Background(), agentAsk)
			_, err := l.Agent().Info(ctx)
			cancel()
			if err != nil {
				l.Close()
				gone = true
			}
		}
	}
	f.t.mu.Lock()
	current := f.t.links[pod] == l
	if current {
		delete(f.t.links, pod)
	}
	f.t.mu.Unlock()
	if !current {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.unmark(ctx, pod); err != nil {
		f.log.Warn("could not take a pod whose agent stopped answering out of the Service", "pod", pod, "err", err)
		return
	}
	f.log.Warn("the agent of a pod stopped answering: pod taken out of the Service", "pod", pod, "service", f.np.svc.Name)
	// A tunnel that dropped while its agent lives (a network blip) is
	// opened again, and the pod marked again, by the next sync; nothing
	// in the pod changes to wake it.
	f.pokeAfter(rejoinAfter)
}

// agentAsk bounds the question whether an agent lives when its direct
// connection ended: a slow answer takes the pod out of the Service, and
// the next sync (a second later) puts it back if the agent lives.
const agentAsk = 500 * time.Millisecond

func (f *follower) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

// leave restores the Service and removes the marks (from the journal,
// which goes with them), then asks every agent to send its traffic to the
// app and closes the tunnels. The agents stay in their pods, idle.
func (f *follower) leave(ctx context.Context) error {
	f.stop()
	_, rerr := undoNoRestart(ctx, f.cs, f.np.w)
	if rerr != nil {
		rerr = fmt.Errorf("restore service/%s and the pods' labels: %w; run `tether rollback %s`", f.np.svc.Name, rerr, f.np.w)
	}
	return errors.Join(rerr, f.t.leave(ctx))
}

// undo undoes a failed start: the tunnels close (the agents send their
// connections to the app again), then the Service and the marks are
// restored from the journal.
func (f *follower) undo(ctx context.Context, cause error) error {
	f.stop()
	f.t.mu.Lock()
	links := f.t.links
	f.t.links = map[string]*agent.Link{}
	f.t.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	if _, err := undoNoRestart(ctx, f.cs, f.np.w); err != nil {
		return fmt.Errorf("%w; %w: %v; run `tether rollback %s` to see what it can restore", cause, errUndoIncomplete, err, f.np.w)
	}
	return cause
}
