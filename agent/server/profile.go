package server

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sync"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// profiler runs the agent's profile, one at a time, on behalf of the
// tunnel that started it (`make bench PROFILE=1`: the daemon profiles
// every agent it links to). Block and mutex sampling are on only while a
// profile runs; their counts add up over the agent's profiles.
type profiler struct {
	mu   sync.Mutex
	sess *tunnel.Session // the tunnel whose profile runs; nil when none
	cpu  *bytes.Buffer
}

func (s *sessionService) StartProfile(_ context.Context, req agent.ProfileRequest) error {
	if err := s.agent.prof.start(s.sess, req); err != nil {
		return err
	}
	s.agent.log.Info("profile started")
	return nil
}

func (s *sessionService) StopProfile(context.Context) (agent.Profiles, error) {
	p, err := s.agent.prof.stop(s.sess)
	if err != nil {
		return agent.Profiles{}, err
	}
	s.agent.log.Info("profile stopped", "cpuBytes", len(p.CPU))
	return p, nil
}

func (p *profiler) start(sess *tunnel.Session, req agent.ProfileRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess != nil {
		return agent.ErrProfiling
	}
	cpu := &bytes.Buffer{}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		return errdefs.Mark(errdefs.ErrFailedCheck, fmt.Errorf("start the CPU profile: %w", err))
	}
	if req.BlockRate <= 0 {
		req.BlockRate = agent.DefaultBlockRate
	}
	if req.MutexFraction <= 0 {
		req.MutexFraction = agent.DefaultMutexFraction
	}
	runtime.SetBlockProfileRate(req.BlockRate)
	runtime.SetMutexProfileFraction(req.MutexFraction)
	p.sess, p.cpu = sess, cpu
	return nil
}

// stop ends sess's profile and returns it.
func (p *profiler) stop(sess *tunnel.Session) (agent.Profiles, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess == nil || p.sess != sess {
		return agent.Profiles{}, agent.ErrNotProfiling
	}
	p.endLocked()
	out := agent.Profiles{CPU: p.cpu.Bytes()}
	for name, dst := range map[string]*[]byte{"block": &out.Block, "mutex": &out.Mutex, "heap": &out.Heap} {
		var b bytes.Buffer
		if err := pprof.Lookup(name).WriteTo(&b, 0); err != nil {
			return agent.Profiles{}, fmt.Errorf("write the %s profile: %w", name, err)
		}
		*dst = b.Bytes()
	}
	p.cpu = nil
	return out, nil
}

// drop ends sess's profile, if it runs one, without keeping it: the
// tunnel is gone.
func (p *profiler) drop(sess *tunnel.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sess != nil && p.sess == sess {
		p.endLocked()
		p.cpu = nil
	}
}

func (p *profiler) endLocked() {
	pprof.StopCPUProfile()
	runtime.SetBlockProfileRate(0)
	runtime.SetMutexProfileFraction(0)
	p.sess = nil
}
