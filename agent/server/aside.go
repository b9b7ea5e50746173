package server

import (
	"context"
	"fmt"

	"github.com/tetherkube/tether/agent"
)

// An agent nobody has intercepted for its idle time (Record.Idle, the
// time after which it also stops recording) costs every caller of the
// workload a hop for nothing. A daemon then points the Service back at
// the app; to do that safely against another daemon intercepting in the
// same moment, it first asks the agent to step aside. The agent agrees
// only when idle, and from then on refuses intercepts (ErrAside) until a
// daemon brings it back, which that daemon does before it points the
// Service at the agent again and bumps the Service's version: the
// stepping-aside daemon's update, conditional on the version it read
// before asking, then fails (daemon/internal/intercept/aside.go).

func (s *sessionService) StepAside(_ context.Context, back bool) error {
	if err := s.agent.serving("StepAside", agent.JobIntercept); err != nil {
		return err
	}
	if err := s.agent.stepAside(back); err != nil {
		return err
	}
	s.agent.log.Info("step aside", "back", back)
	return nil
}

// stepAside sets the agent aside (back: in front of the app again).
func (a *Agent) stepAside(back bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if back {
		a.aside = false
		return nil
	}
	for port, p := range a.ports {
		for _, ic := range p.list {
			if ic.live() && !(ic.spec.Mirror && a.tap != nil) { // a tap's mirror copies from packets (passive.go)
				return fmt.Errorf("port %d is intercepted by %s: %w", port, owner(ic.spec.Owner), agent.ErrBusy)
			}
		}
	}
	if a.tap != nil {
		// It records the callers from their packets wherever the Service
		// sends them.
		a.aside = true
		return nil
	}
	idle := a.cfg.Record.Idle
	if idle <= 0 {
		return fmt.Errorf("the agent runs with --record-idle 0, so it stays in the Service's path: %w", agent.ErrBusy)
	}
	if !a.idle.idleFor(idle) {
		return fmt.Errorf("intercepted within the last %s (--record-idle): %w", idle, agent.ErrBusy)
	}
	a.aside = true
	return nil
}
