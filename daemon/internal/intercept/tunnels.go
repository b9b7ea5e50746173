package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/portforward"
	"github.com/tetherkube/tether/tunnel"
)

// tunnels holds a tunnel to the agent of every ready pod of a workload,
// following pods as they come and go.
type tunnels struct {
	cs        kubernetes.Interface
	dialer    Dialer
	log       *slog.Logger
	ns, sel   string
	token     []byte
	spec      agent.InterceptSpec // what each agent is asked for
	agentPort int
	localPort int
	// path is the path asked for; chooser opens it.
	path    agent.Path
	chooser *agent.PathChooser
	onLink  func(ctx context.Context, pod string, l *agent.Link)
	// keep, when set, takes the tunnels leave ends (and gives them back to
	// the next intercept), under keepKey.
	keep    *KeptLinks
	keepKey string
	// pre, when set, holds the tunnels opened while the rollout ran.
	pre *predial
	// offers are the direct offers under way (auto); tl, when set, times
	// each dial's steps.
	offers *pendingOffers
	tl     *timeline
	// svc is the Service that sends the port to the agents; an agent that
	// stepped aside is brought back with it (aside.go).
	svc string

	// serving ends the serve loops (leave): a kept tunnel serves nothing.
	serving     context.Context
	stopServing context.CancelFunc

	mu     sync.Mutex
	links  map[string]*agent.Link
	uids   map[string]types.UID // of the pods in links, for keep
	conns  map[net.Conn]bool    // the intercepted connections open now
	cancel context.CancelFunc
	done   chan struct{}
}

func newTunnels(cs kubernetes.Interface, d Dialer, log *slog.Logger, ns, sel string, token []byte, spec agent.InterceptSpec, localPort int) *tunnels {
	serving, stop := context.WithCancel(context.Background())
	return &tunnels{cs: cs, dialer: d, log: log, ns: ns, sel: sel, token: token, spec: spec,
		agentPort: spec.ListenPort, localPort: localPort, links: map[string]*agent.Link{}, uids: map[string]types.UID{}, conns: map[net.Conn]bool{},
		serving: serving, stopServing: stop, done: make(chan struct{}), offers: &pendingOffers{}}
}

// start connects to every ready agent now, then keeps following pods.
func (t *tunnels) start(ctx context.Context) error {
	if err := t.sync(ctx); err != nil {
		return err
	}
	if len(t.pods()) == 0 {
		return errors.New("no ready pod runs the agent")
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel = cancel
	go func() {
		defer close(t.done)
		// A sync that failed (the API server or a kubelet away: a control
		// plane restarting) is tried again sooner, so that the tunnels are
		// back within moments of the cluster, for syncRetryFor; a failure
		// that lasts longer is tried once a second, as a sync that works.
		// Warnings stay one a second.
		wait := time.Second
		var failingSince, lastWarn time.Time
		for {
			select {
			case <-bg.Done():
				return
			case <-time.After(wait):
			}
			wait = time.Second
			err := t.sync(bg)
			if err == nil {
				failingSince = time.Time{}
			}
			if err != nil && bg.Err() == nil {
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				if time.Since(failingSince) < syncRetryFor {
					wait = syncRetry
				}
				if time.Since(lastWarn) >= time.Second {
					t.log.Warn("following pods", "err", err)
					lastWarn = time.Now()
				}
			}
		}
	}()
	return nil
}

// syncRetry is how soon a failed sync is tried again, while it has
// failed for less than syncRetryFor.
const (
	syncRetry    = 200 * time.Millisecond
	syncRetryFor = 30 * time.Second
)

// sync opens tunnels to new ready pods and drops those of gone pods.
func (t *tunnels) sync(ctx context.Context) error {
	pods := &corev1.PodList{}
	if t.pre != nil && t.pre.seen != nil {
		pods.Items, t.pre.seen = t.pre.seen, nil // the first sync, right after the rollout
	} else {
		var err error
		if pods, err = t.cs.CoreV1().Pods(t.ns).List(ctx, metav1.ListOptions{LabelSelector: t.sel}); err != nil {
			return err
		}
	}
	live := map[string]bool{}
	// Pods are connected at once: each may wait up to a second for its
	// direct path (a cluster the laptop cannot be reached from), and that
	// wait must not add up over the replicas.
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	for i := range pods.Items {
		p := &pods.Items[i]
		ready, _ := agentState(p)
		if !ready {
			continue
		}
		live[p.Name] = true
		t.mu.Lock()
		l := t.links[p.Name]
		t.mu.Unlock()
		if l != nil && !l.Ended() {
			continue // healthy
		}
		wg.Go(func() {
			if err := t.connect(ctx, p); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	t.mu.Lock()
	for name, l := range t.links {
		if !live[name] {
			l.Close()
			delete(t.links, name)
		}
	}
	t.mu.Unlock()
	return errors.Join(errs...)
}

// connect opens a tunnel to pod p's agent, the direct path as t.path
// asks, and intercepts the port through it. A tunnel an earlier intercept
// kept to the same pod is used instead of a new one (kept.go).
func (t *tunnels) connect(ctx context.Context, p *corev1.Pod) error {
	pod := p.Name
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	l, reused, how := t.kept(cctx, p, ip), true, "kept"
	if l == nil {
		reused, how = false, "opened during the rollout"
		l = t.pre.take(cctx, p, t.token)
	}
	if l == nil {
		how = "opened"
		var err error
		if l, err = t.dial(cctx, pod, ip); err != nil {
			return err
		}
	}
	timed := t.tl.begin("agent intercepts", pod)
	err := t.intercept(cctx, l.Agent())
	timed()
	if err != nil {
		l.Close()
		return fmt.Errorf("intercept on pod %s: %w", pod, err)
	}
	if t.onLink != nil && !reused {
		t.onLink(cctx, pod, l) // a kept tunnel's agent was profiled since it opened
	}
	go t.serve(pod, l)
	t.mu.Lock()
	if old := t.links[pod]; old != nil && old != l {
		old.Close()
	}
	t.links[pod] = l
	t.uids[pod] = p.UID
	t.mu.Unlock()
	t.log.Info("intercepting", "pod", pod, "agentPort", t.agentPort, "localPort", t.localPort, "path", l.Path(), "tunnel", how)
	return nil
}

// dial opens a tunnel to pod's agent and its direct path as t.path asks.
// Under auto the direct path is offered while the caller goes on (an
// intercept's check and release): the tunnel carries its connections over
// the port-forward until it opens, and settle waits for it. Under direct
// a tunnel without it is an error, so dial waits.
func (t *tunnels) dial(ctx context.Context, pod string, ip netip.Addr) (*agent.Link, error) {
	return t.dialWith(ctx, pod, ip, nil)
}

// dialWith is dial over early, a port-forward connection opened to the pod
// before its agent ran (nil: none), which it spends; should that fail, it
// dials again.
func (t *tunnels) dialWith(ctx context.Context, pod string, ip netip.Addr, early *portforward.Early) (*agent.Link, error) {
	cfg := tunnel.DaemonConfig(t.token)
	cfg.Logger = t.log
	var l *agent.Link
	if early != nil {
		timed := t.tl.begin("streams and handshake", pod)
		c, err := early.Dial()
		if err == nil {
			if l, err = agent.Connect(ctx, c, cfg); err != nil {
				c.Close()
			}
		}
		timed()
		if err != nil {
			t.log.Info("the port-forward opened before the agent ran failed; dialing again", "pod", pod, "err", err)
		}
	}
	if l == nil {
		timed := t.tl.begin("port-forward", pod)
		c, err := t.dialer.DialPod(ctx, t.ns, pod, agent.DefaultTunnelPort)
		timed()
		if err != nil {
			return nil, fmt.Errorf("reach the agent of pod %s: %w", pod, err)
		}
		timed = t.tl.begin("handshake", pod)
		l, err = agent.Connect(ctx, c, cfg)
		timed()
		if err != nil {
			return nil, fmt.Errorf("tunnel to pod %s: %w", pod, err)
		}
	}
	if t.path == agent.PathAuto && t.chooser != nil {
		done := t.offers.start()
		timed := t.tl.begin("direct offer", pod)
		go func() {
			defer done()
			// Bounded by the offer's own timeout; under auto a failed
			// offer is logged and the port-forward goes on.
			t.useDirect(context.WithoutCancel(ctx), l, ip)
			timed()
		}()
		return l, nil
	}
	timed := t.tl.begin("direct offer", pod)
	err := t.useDirect(ctx, l, ip)
	timed()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	return l, nil
}

// settle waits, within ctx, for the direct offers dial started, so that
// what the caller reports (status's paths) is what the tunnels use.
func (t *tunnels) settle(ctx context.Context) {
	t.offers.wait(ctx)
}

// pendingOffers are direct offers under way.
type pendingOffers struct {
	mu      sync.Mutex
	pending map[chan struct{}]bool
}

// start counts an offer in; the function it returns counts it out.
func (p *pendingOffers) start() func() {
	ch := make(chan struct{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		p.pending = map[chan struct{}]bool{}
	}
	p.pending[ch] = true
	return func() {
		p.mu.Lock()
		delete(p.pending, ch)
		p.mu.Unlock()
		close(ch)
	}
}

// wait returns once every offer started before it has ended, or ctx has.
func (p *pendingOffers) wait(ctx context.Context) {
	p.mu.Lock()
	var chans []chan struct{}
	for ch := range p.pending {
		chans = append(chans, ch)
	}
	p.mu.Unlock()
	waitAll(ctx, chans)
}

// kept returns the tunnel an earlier intercept kept to p's agent, on the
// path t.path asks for, or nil. A kept direct tunnel where the
// port-forward is asked for is closed (a new one is dialed); a kept
// port-forward tunnel where direct is asked for is offered the direct
// path. Under auto a kept tunnel goes on as it is: auto chose when it
// opened, and offering again where the pod cannot reach this machine
// would cost each re-intercept the offer's timeout.
func (t *tunnels) kept(ctx context.Context, p *corev1.Pod, ip netip.Addr) *agent.Link {
	l := t.keep.take(t.keepKey, p.Name, p.UID, t.token)
	if l == nil {
		return nil
	}
	switch {
	case t.path == agent.PathPortForward && l.Path() == agent.PathDirect:
		l.Close()
		return nil
	case t.path == agent.PathDirect && l.Path() != agent.PathDirect:
		if err := t.useDirect(ctx, l, ip); err != nil {
			l.Close()
			return nil // dialed again, to say why with a tunnel of its own
		}
	}
	return l
}

// useDirect opens l's direct path as t.path asks.
func (t *tunnels) useDirect(ctx context.Context, l *agent.Link, podIP netip.Addr) error {
	if t.chooser == nil {
		if t.path == agent.PathDirect {
			return errors.New("--path direct: this daemon offers no direct path")
		}
		return nil
	}
	return t.chooser.Use(ctx, l, t.path, podIP)
}

// serve passes each intercepted connection of sess to the local port. When
// nothing listens there, the stream is closed at once and the cluster
// caller sees its connection end, promptly.
func (t *tunnels) serve(pod string, l *agent.Link) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(t.localPort))
	for {
		st, err := l.AcceptConn(t.serving)
		if err != nil {
			return
		}
		t.mu.Lock()
		t.conns[st] = true
		t.mu.Unlock()
		go func() {
			defer func() {
				t.mu.Lock()
				delete(t.conns, st)
				t.mu.Unlock()
			}()
			local, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.log.Warn("local port not reachable; closing the intercepted connection", "pod", pod, "addr", addr, "err", err)
				st.Close()
				return
			}
			tunnel.Join(st, local)
		}()
	}
}

// endConns ends the intercepted connections still open, and those the
// agents sent that no serve loop took: after leave a kept tunnel carries
// none (closing the tunnel used to end them).
func (t *tunnels) endConns(kept map[string]*agent.Link) {
	t.mu.Lock()
	conns := t.conns
	t.conns = map[net.Conn]bool{}
	t.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	var wg sync.WaitGroup
	for _, l := range kept {
		wg.Go(func() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
				st, err := l.AcceptConn(ctx)
				cancel()
				if err != nil {
					return
				}
				st.Close()
			}
		})
	}
	wg.Wait()
}

func (t *tunnels) pods() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.links))
	for name := range t.links {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// paths says, by pod, which path each tunnel takes now.
func (t *tunnels) paths() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]string, len(t.links))
	for name, l := range t.links {
		out[name] = string(l.Path())
	}
	return out
}

// leave asks every agent to send traffic to the app again, then closes the
// tunnels (which alone would do the same), or keeps those whose agent
// left when t.keep is set.
func (t *tunnels) leave(ctx context.Context) error {
	t.stop()
	t.mu.Lock()
	links, uids := t.links, t.uids
	t.links, t.uids = map[string]*agent.Link{}, map[string]types.UID{}
	t.mu.Unlock()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	kept := map[string]*agent.Link{}
	for name, l := range links {
		wg.Go(func() {
			err := l.Agent().Leave(ctx, t.agentPort, t.spec.ID)
			errMu.Lock()
			defer errMu.Unlock()
			if err == nil && t.keep != nil {
				kept[name] = l
				return
			}
			l.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: %w", name, err))
			}
		})
	}
	wg.Wait()
	// The agents have left: nothing more comes to serve, and a kept
	// tunnel must be served by the next intercept only. The connections
	// intercepted so far end, as they did when leave closed the tunnels:
	// a caller's kept-alive connection must not stay with the laptop.
	t.stopServing()
	t.endConns(kept)
	for name, l := range kept {
		t.keep.put(t.keepKey, name, uids[name], t.token, l)
	}
	return errors.Join(errs...)
}

func (t *tunnels) stop() {
	if t.cancel != nil {
		t.cancel()
		<-t.done
		t.cancel = nil
	}
}

// link returns the live tunnel to pod's agent, or nil.
func (t *tunnels) link(pod string) *agent.Link {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.links[pod]
	if l == nil || l.Ended() {
		return nil
	}
	return l
}

// intercept asks agent a for t.spec, bringing it back first when it
// stepped aside (a daemon pointing the Service at the app meanwhile
// fails to: aside.go); a few times, should another step it aside again.
func (t *tunnels) intercept(ctx context.Context, a agent.Service) error {
	for try := 1; ; try++ {
		err := a.Intercept(ctx, t.spec)
		if !errors.Is(err, agent.ErrAside) || t.svc == "" || try == 3 {
			return err
		}
		if err := bringBack(ctx, t.cs, t.ns, t.svc, a); err != nil {
			return err
		}
	}
}
