package server

import (
	"context"
	"fmt"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/readyprobe"
)

// defaultProbeTTL is how long a nonce is answered when the daemon gives
// no TTL.
const defaultProbeTTL = 30 * time.Second

// maxProbeTTL bounds how long a nonce is answered.
const maxProbeTTL = 5 * time.Minute

func (s *sessionService) ExpectProbe(_ context.Context, nonce []byte, ttl time.Duration, forget bool) error {
	if err := s.agent.serving("ExpectProbe", agent.JobIntercept); err != nil {
		return err
	}
	var n readyprobe.Nonce
	if len(nonce) != len(n) {
		return fmt.Errorf("%w: a readiness nonce has %d bytes, got %d", agent.ErrBadProbe, len(n), len(nonce))
	}
	copy(n[:], nonce)
	if forget {
		s.agent.nonces.Forget(n)
		return nil
	}
	switch {
	case ttl <= 0:
		ttl = defaultProbeTTL
	case ttl > maxProbeTTL:
		ttl = maxProbeTTL
	}
	s.agent.nonces.Expect(n, ttl)
	return nil
}

func (s *sessionService) ProbeService(ctx context.Context, req agent.ServiceProbeRequest) (agent.ServiceProbeResult, error) {
	if err := s.agent.serving("ProbeService", agent.JobIntercept, agent.JobProbe); err != nil {
		return agent.ServiceProbeResult{}, err
	}
	var n readyprobe.Nonce
	if len(req.Nonce) != len(n) {
		return agent.ServiceProbeResult{}, fmt.Errorf("%w: a readiness nonce has %d bytes, got %d", agent.ErrBadProbe, len(n), len(req.Nonce))
	}
	copy(n[:], req.Nonce)
	if len(req.Expect) == 0 {
		return agent.ServiceProbeResult{}, fmt.Errorf("%w: no pod to expect", agent.ErrBadProbe)
	}
	if req.Timeout > maxProbeTTL {
		req.Timeout = maxProbeTTL
	}
	res, err := readyprobe.Probe(ctx, readyprobe.Request{Address: req.Address, Nonce: n, Expect: req.Expect,
		Streak: req.Streak, Timeout: req.Timeout, Unreachable: req.Unreachable})
	if err != nil && ctx.Err() == nil {
		return agent.ServiceProbeResult{}, fmt.Errorf("%w: %v", agent.ErrBadProbe, err)
	}
	s.agent.log.Info("service probe", "address", req.Address, "ready", res.Ready, "answered", res.Answered,
		"missed", res.Missed, "failed", res.Failed, "elapsed", res.Elapsed)
	return agent.ServiceProbeResult{Ready: res.Ready, Answered: res.Answered, Missed: res.Missed, Failed: res.Failed,
		Elapsed: res.Elapsed, LastError: res.LastError}, err
}
