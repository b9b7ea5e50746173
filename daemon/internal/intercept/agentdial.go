package intercept

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/internal/portforward"
	"github.com/tetherkube/tether/tunnel"
)

// dialUntilUp opens a tunnel to agent a while its container starts
// (inspect.UntilUp, for a minute), explaining a failure. Each try's API connection is opened
// ahead (agentDialer).
func (f *follower) dialUntilUp(ctx context.Context, a inspect.Agent) (*agent.Link, func() error, error) {
	ad := &agentDialer{d: f.dialer, ns: f.np.w.Namespace, pod: a.Pod, port: a.Port}
	defer ad.close()
	var l *agent.Link
	var stored func() error
	start := time.Now()
	tries, err := inspect.UntilUp(ctx, f.cs, f.np.w.Namespace, a, time.Minute, func(ctx context.Context) error {
		try := time.Now()
		var err error
		if l, stored, err = f.link(ctx, a, ad); err == nil {
			f.tl.Load().between("wait-agent", a.Pod, start, try)
			return nil
		}
		f.log.Debug("agent does not answer yet", "pod", a.Pod, "took", time.Since(try), "err", err)
		return err
	})
	if err != nil {
		return nil, nil, inspect.Explain(ctx, f.cs, a, f.np.w.Namespace, err)
	}
	f.log.Info("agent answers", "pod", a.Pod, "agent", a.Container, "tries", tries, "took", time.Since(start))
	return l, stored, nil
}

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
	f.tl.Load().between("dial", a.Pod, t0, t1)
	f.tl.Load().between("handshake", a.Pod, t1, t2)
	if !a.Bootstrap {
		return l, func() error { return nil }, nil
	}
	token := inspect.NewToken()
	if err := l.Rotate(ctx, token); err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("agent %s of pod %s: %w", a.Container, a.Pod, err)
	}
	t3 := time.Now()
	f.tl.Load().between("rotate", a.Pod, t2, t3)
	errc := make(chan error, 1)
	go func() {
		err := inspect.StoreToken(ctx, f.cs, f.np.w.Namespace, a, token)
		f.tl.Load().between("secret", a.Pod, t3, time.Now())
		errc <- err
	}()
	return l, func() error { return <-errc }, nil
}
