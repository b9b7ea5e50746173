package server

import (
	"context"
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

func (s *sessionService) Intercept(_ context.Context, spec agent.InterceptSpec) error {
	if err := s.agent.serving("Intercept", agent.JobIntercept); err != nil {
		return err
	}
	if err := s.agent.intercept(spec, s.sess); err != nil {
		return err
	}
	s.agent.log.Info("intercept", "port", spec.ListenPort, "id", spec.ID, "owner", spec.Owner,
		"filter", spec.Filter, "mirror", spec.Mirror)
	return nil
}

func (s *sessionService) Leave(_ context.Context, port int, id string) error {
	if err := s.agent.serving("Leave", agent.JobIntercept); err != nil {
		return err
	}
	if err := s.agent.leave(port, s.sess, id); err != nil {
		return err
	}
	s.agent.log.Info("leave", "port", port, "id", id)
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
		IdleSince:    a.idle.idleSince(),
	}
	a.mu.Lock()
	info.Aside = a.aside
	a.mu.Unlock()
	info.RecordIdle = a.cfg.Record.Idle // also the time after which it may step aside
	if a.ring != nil {
		info.RecordingPaused = !a.recording()
	}
	if a.tap != nil {
		st := a.tap.Stats()
		info.Passive = &agent.PassiveStats{Conns: st.Conns, MidStream: st.MidStream, Gaps: st.Gaps + st.Over, DroppedPackets: st.Dropped}
	}
	for _, f := range a.cfg.Forwards {
		info.Forwards = append(info.Forwards, a.forwardStatus(f))
	}
	sort.Slice(info.Forwards, func(i, j int) bool { return info.Forwards[i].ListenPort < info.Forwards[j].ListenPort })
	return info
}

func (s *sessionService) DialBack(ctx context.Context, req agent.DialBackRequest) error {
	return s.agent.dialBack(ctx, s.sess, req)
}
