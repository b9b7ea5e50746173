package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/tunnel"
)

// inspectAgent makes sure an inspection agent runs in the pod and returns a
// link to it over a new tunnel; the caller closes the link.
func (d *Daemon) inspectAgent(ctx context.Context, req inspect.Request, progress func(string)) (*agent.Link, error) {
	a, err := inspect.Ensure(ctx, d.cs, req, progress)
	if err != nil {
		return nil, err // user errors come marked
	}
	var link *agent.Link
	if a.Bootstrap {
		link, err = d.linkStarting(ctx, req.Namespace, a)
	} else {
		link, err = d.agentLink(ctx, req.Namespace, req.Pod, a.Port, a.Token)
	}
	if err != nil {
		if a.Bootstrap && errors.Is(err, tunnel.ErrBadToken) {
			err = fmt.Errorf("%w (agent %s accepts the token in its spec for one tunnel, within %s of its start: another tether used it first, "+
				"or could not keep the token it rotated to)", err, a.Container, inspect.BootstrapTTL)
		}
		return nil, inspect.Explain(ctx, d.cs, a, req.Namespace, err)
	}
	if a.Bootstrap {
		if err := rotate(ctx, d.cs, req.Namespace, a, link); err != nil {
			link.Close()
			return nil, err
		}
	}
	return link, nil
}

// startingFor bounds how long linkStarting dials a new agent.
const startingFor = 20 * time.Second

// linkStarting opens a tunnel to new agent a while it starts
// (inspect.UntilUp).
func (d *Daemon) linkStarting(ctx context.Context, namespace string, a inspect.Agent) (*agent.Link, error) {
	var link *agent.Link
	start := time.Now()
	tries, err := inspect.UntilUp(ctx, d.cs, namespace, a, startingFor, func(ctx context.Context) error {
		var err error
		if link, err = d.agentLink(ctx, namespace, a.Pod, a.Port, a.Token); err != nil {
			d.log.Debug("new agent does not answer yet", "pod", a.Pod, "agent", a.Container, "err", err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if tries > 1 {
		d.log.Info("new agent answers", "pod", a.Pod, "agent", a.Container, "tries", tries, "took", time.Since(start))
	}
	return link, nil
}

// rotate replaces the bootstrap token of a new agent, which anyone who may
// read the pod knows, by a new token kept in a Secret the pod owns; from
// then on only that token opens tunnels to the agent.
func rotate(ctx context.Context, cs kubernetes.Interface, namespace string, a inspect.Agent, link *agent.Link) error {
	token := inspect.NewToken()
	if err := link.Rotate(ctx, token); err != nil {
		return fmt.Errorf("agent %s of pod %s: %w", a.Container, a.Pod, err)
	}
	return inspect.StoreToken(ctx, cs, namespace, a, token)
}

// agentLink opens a tunnel to the agent listening on port in the pod.
func (d *Daemon) agentLink(ctx context.Context, namespace, pod string, port int, token []byte) (*agent.Link, error) {
	conn, err := d.dialer.DialPod(ctx, namespace, pod, port)
	if err != nil {
		return nil, fmt.Errorf("reach the agent of pod %s: %w", pod, err)
	}
	cfg := tunnel.DaemonConfig(token)
	cfg.Logger = d.log
	link, err := agent.Connect(ctx, conn, cfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel to pod %s: %w", pod, err)
	}
	d.agentProf.watch(ctx, pod, link)
	return link, nil
}

// usePath opens the direct path of link to the agent of the pod at podIP as
// path asks (agent.PathChooser), with this daemon run's key.
func (d *Daemon) usePath(ctx context.Context, link *agent.Link, podIP string, path agent.Path) error {
	ip, _ := netip.ParseAddr(podIP)
	return d.paths.Use(ctx, link, path, ip)
}
