package intercept

import (
	"bytes"
	"context"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/agent"
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

	mu     sync.Mutex
	byPod  map[types.UID]*dialing
	closed bool
	wg     sync.WaitGroup
}

type dialing struct {
	done chan struct{}
	link *agent.Link // nil when the dial failed, or once taken
}

func newPredial(ctx context.Context, t *tunnels, tl *timeline) *predial {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.tl = tl
	return &predial{t: t, tl: tl, ctx: pctx, cancel: cancel, byPod: map[types.UID]*dialing{}}
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
	p.wg.Go(func() {
		defer close(d.done)
		l, err := p.t.dial(p.ctx, name, ip)
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
}
