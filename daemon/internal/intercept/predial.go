package intercept

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/portforward"
)

// predial opens the tunnels to a rollout's agents while the rollout goes
// on, each as soon as its pod's agent is ready, so that the intercept
// finds them open when the rollout ends instead of dialing then (a
// port-forward, the handshake and the direct path's offer per pod).
type predial struct {
	t      *tunnels // how to dial: its dialer, token, path
	tl     *timeline
	ctx    context.Context
	cancel context.CancelFunc

	// seen are the workload's pods as the rollout's end saw them: the
	// tunnels' first sync needs no list of its own.
	seen []corev1.Pod

	mu     sync.Mutex
	byPod  map[types.UID]*dialing
	early  map[types.UID]*earlyConn
	closed bool
	wg     sync.WaitGroup
}

type dialing struct {
	done chan struct{}
	link *agent.Link // nil when the dial failed, or once taken
}

// earlyConn is a pod's port-forward connection opened before its agent
// runs; conn is set (or not, when it failed) once done is closed. stop
// ends its retries (the agent is ready: a dial of its own is as quick).
type earlyConn struct {
	done chan struct{}
	conn *portforward.Early
	stop context.CancelFunc
}

// earlyDialer opens a pod's port-forward connection before anything
// listens in the pod (portforward.Dialer).
type earlyDialer interface {
	ConnectPod(ctx context.Context, namespace, pod string, port int) (*portforward.Early, error)
}

func newPredial(ctx context.Context, t *tunnels, tl *timeline) *predial {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.tl = tl
	return &predial{t: t, tl: tl, ctx: pctx, cancel: cancel, byPod: map[types.UID]*dialing{}, early: map[types.UID]*earlyConn{}}
}

// started opens the port-forward connection to a new pod of the rollout
// (one with the agent in its spec) as soon as the pod has its sandbox,
// before its agent runs, when the dialer can: the upgrade through the API
// server and the kubelet is most of a dial (80-260 ms on the local
// cluster under load), and the dial once the agent is ready then only
// opens its streams. The kubelet reports the pod's IP only with its
// containers started, so the connection is tried from the pod's
// scheduling on, every earlyRetry until the sandbox takes it.
func (p *predial) started(pod *corev1.Pod) {
	ed, ok := p.t.dialer.(earlyDialer)
	if !ok || pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil || !hasAgent(&corev1.PodTemplateSpec{Spec: pod.Spec}) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.early[pod.UID] != nil || p.byPod[pod.UID] != nil {
		return
	}
	rctx, stop := context.WithCancel(p.ctx)
	e := &earlyConn{done: make(chan struct{}), stop: stop}
	p.early[pod.UID] = e
	name := pod.Name
	timed := p.tl.begin("port-forward before the agent runs", name)
	p.wg.Go(func() {
		defer close(e.done)
		defer stop()
		for try := 1; ; try++ {
			// An attempt under way when the retries stop may finish,
			// within earlyAttempt (the dial once the agent is ready
			// waits for it).
			actx, cancel := context.WithTimeout(p.ctx, earlyAttempt)
			c, err := ed.ConnectPod(actx, p.t.ns, name, agent.DefaultTunnelPort)
			cancel()
			if err == nil {
				timed()
				p.t.log.Debug("port-forward before the agent runs", "pod", name, "tries", try)
				e.conn = c
				return
			}
			select {
			case <-rctx.Done():
				p.t.log.Info("port-forward before the agent runs; dialing now it is ready", "pod", name, "tries", try, "err", err)
				return
			case <-time.After(earlyRetry):
			}
		}
	})
}

// earlyRetry is how often a new pod's port-forward is tried before its
// sandbox takes it (an attempt fails at once until then).
const earlyRetry = 100 * time.Millisecond

// earlyAttempt bounds one attempt (about 150-250 ms when it succeeds on
// the local cluster under load).
const earlyAttempt = 2 * time.Second

// takeEarly returns the port-forward connection started opened to pod,
// waiting for it, or nil.
func (p *predial) takeEarly(uid types.UID) *portforward.Early {
	p.mu.Lock()
	e := p.early[uid]
	delete(p.early, uid)
	p.mu.Unlock()
	if e == nil {
		return nil
	}
	e.stop()
	<-e.done // an attempt under way, bounded by p.ctx
	return e.conn
}

// pod starts opening a tunnel to p's agent, once per pod UID.
func (p *predial) pod(pod *corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.byPod[pod.UID] != nil {
		return
	}
	d := &dialing{done: make(chan struct{})}
	p.byPod[pod.UID] = d
	name := pod.Name
	ip, _ := netip.ParseAddr(pod.Status.PodIP)
	timed := p.tl.begin("tunnel during the rollout", name)
	uid := pod.UID
	p.wg.Go(func() {
		defer close(d.done)
		l, err := p.t.dialWith(p.ctx, name, ip, p.takeEarly(uid))
		timed()
		if err != nil {
			p.t.log.Info("tunnel during the rollout; the intercept dials again", "pod", name, "err", err)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			l.Close()
			return
		}
		d.link = l
	})
}

// take returns the live tunnel opened to pod's agent with token, waiting
// for its dial when one is under way, and gives it to the caller; nil when
// there is none.
func (p *predial) take(ctx context.Context, pod *corev1.Pod, token []byte) *agent.Link {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	d := p.byPod[pod.UID]
	p.mu.Unlock()
	if d == nil {
		return nil
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return nil
	}
	p.mu.Lock()
	l := d.link
	d.link = nil
	p.mu.Unlock()
	if l == nil || l.Ended() {
		return nil
	}
	if !bytes.Equal(token, p.t.token) { // the Secret was replaced meanwhile
		l.Close()
		return nil
	}
	return l
}

// close stops the dials and closes the tunnels nobody took.
func (p *predial) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.t.stopServing()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.byPod {
		if d.link != nil {
			d.link.Close()
			d.link = nil
		}
	}
	for uid, e := range p.early { // pods whose agents never got ready
		if e.conn != nil {
			e.conn.Close()
		}
		delete(p.early, uid)
	}
}
