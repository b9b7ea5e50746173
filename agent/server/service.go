package server

import (
	"context"
	"fmt"
	"sort"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/tunnel"
)

// sessionService is the agent.Service for calls that came through sess.
type sessionService struct {
	agent *Agent
	sess  *tunnel.Session
}

var _ agent.Service = (*sessionService)(nil)

func (s *sessionService) Info(context.Context) (agent.Info, error) {
	return s.agent.info(), nil
}

func (s *sessionService) Rotate(_ context.Context, token []byte) error {
	if err := s.agent.keys.rotate(token); err != nil {
		return err
	}
	s.agent.log.Info("token rotated: the bootstrap token no longer opens tunnels")
	return nil
}

func (s *sessionService) Intercept(_ context.Context, port int) error {
	if err := s.agent.serving("Intercept", agent.JobIntercept); err != nil {
		return err
	}
	if err := s.agent.claim(port, s.sess); err != nil {
		return err
	}
	s.agent.log.Info("intercept", "port", port)
	return nil
}

func (s *sessionService) Leave(_ context.Context, port int) error {
	a := s.agent
	if err := a.serving("Leave", agent.JobIntercept); err != nil {
		return err
	}
	if _, ok := a.forward(port); !ok {
		return fmt.Errorf("port %d: %w", port, agent.ErrUnknownPort)
	}
	a.mu.Lock()
	if a.intercepts[port] == s.sess {
		delete(a.intercepts, port)
	}
	a.mu.Unlock()
	a.log.Info("leave", "port", port)
	return nil
}

// claim binds port to sess unless another live tunnel holds it. The check
// and the binding are one critical section, so of two tunnels claiming a
// free port at once exactly one wins.
func (a *Agent) claim(port int, sess *tunnel.Session) error {
	if _, ok := a.forward(port); !ok {
		return fmt.Errorf("port %d: %w", port, agent.ErrUnknownPort)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.interceptorLocked(port); cur != nil && cur != sess {
		return fmt.Errorf("port %d: %w", port, agent.ErrAlreadyIntercepted)
	}
	a.intercepts[port] = sess
	return nil
}

// info reports the agent's build, pod and forwards.
func (a *Agent) info() agent.Info {
	b := buildinfo.Get()
	info := agent.Info{
		Version:      b.Version,
		Commit:       b.Commit,
		PodName:      a.cfg.PodName,
		PodNamespace: a.cfg.PodNamespace,
		StartedAt:    a.started,
	}
	for _, f := range a.cfg.Forwards {
		info.Forwards = append(info.Forwards, agent.ForwardStatus{Forward: f, Intercepted: a.interceptor(f.ListenPort) != nil})
	}
	sort.Slice(info.Forwards, func(i, j int) bool { return info.Forwards[i].ListenPort < info.Forwards[j].ListenPort })
	return info
}

func (s *sessionService) DialBack(ctx context.Context, req agent.DialBackRequest) error {
	return s.agent.dialBack(ctx, s.sess, req)
}
