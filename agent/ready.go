package agent

import (
	"time"

	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
)

// ProbeNonceSize is the length of a readiness probe's nonce.
const ProbeNonceSize = 16

// ServiceProbeRequest asks an agent to connect to a Service from its pod,
// each time anew and sending the readiness marker with Nonce
// (agent/internal/readyprobe/spec.md), until the agents of every pod in
// Expect have answered and the last Streak connections all reached them,
// or Timeout.
type ServiceProbeRequest struct {
	// Address is the Service's ClusterIP:port.
	Address string
	Nonce   []byte
	Expect  []string
	// Zero values take the agent's defaults: 8 in a row, 10 s, and 2 s
	// without any connection made before the check gives up.
	Streak      int
	Timeout     time.Duration
	Unreachable time.Duration
}

// ServiceProbeResult is what the check saw. Not Ready is a result, not an
// error.
type ServiceProbeResult struct {
	Ready bool
	// Answered counts answers by pod.
	Answered map[string]int
	// Missed: connections no expected agent answered (an app behind stale
	// rules, a silent peer); Failed: connections not made.
	Missed, Failed int
	Elapsed        time.Duration
	LastError      string
}

// ServiceProbeRequestToProto and ServiceProbeRequestFromProto carry a
// ServiceProbeRequest.
func ServiceProbeRequestToProto(r ServiceProbeRequest) *agentv1.ProbeServiceRequest {
	return &agentv1.ProbeServiceRequest{Address: r.Address, Nonce: r.Nonce, Expect: r.Expect, Streak: int32(r.Streak),
		TimeoutMillis: r.Timeout.Milliseconds(), UnreachableMillis: r.Unreachable.Milliseconds()}
}

func ServiceProbeRequestFromProto(r *agentv1.ProbeServiceRequest) ServiceProbeRequest {
	return ServiceProbeRequest{Address: r.GetAddress(), Nonce: r.GetNonce(), Expect: r.GetExpect(), Streak: int(r.GetStreak()),
		Timeout:     time.Duration(r.GetTimeoutMillis()) * time.Millisecond,
		Unreachable: time.Duration(r.GetUnreachableMillis()) * time.Millisecond}
}

// ServiceProbeResultToProto and ServiceProbeResultFromProto carry a
// ServiceProbeResult.
func ServiceProbeResultToProto(r ServiceProbeResult) *agentv1.ProbeServiceResponse {
	resp := &agentv1.ProbeServiceResponse{Ready: r.Ready, Missed: int32(r.Missed), Failed: int32(r.Failed),
		ElapsedNanos: int64(r.Elapsed), LastError: r.LastError, Answered: map[string]int32{}}
	for pod, n := range r.Answered {
		resp.Answered[pod] = int32(n)
	}
	return resp
}

func ServiceProbeResultFromProto(r *agentv1.ProbeServiceResponse) ServiceProbeResult {
	res := ServiceProbeResult{Ready: r.GetReady(), Missed: int(r.GetMissed()), Failed: int(r.GetFailed()),
		Elapsed: time.Duration(r.GetElapsedNanos()), LastError: r.GetLastError(), Answered: map[string]int{}}
	for pod, n := range r.GetAnswered() {
		res.Answered[pod] = int(n)
	}
	return res
}
