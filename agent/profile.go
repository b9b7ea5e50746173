package agent

import "github.com/tetherkube/tether/internal/errdefs"

// ProfileRequest shapes a profile of the agent; zero fields take the
// defaults (the daemon's own: DefaultBlockRate, DefaultMutexFraction).
type ProfileRequest struct {
	// BlockRate: one block-profile sample per this many nanoseconds
	// blocked (runtime.SetBlockProfileRate).
	BlockRate int
	// MutexFraction: one contention event sampled in this many
	// (runtime.SetMutexProfileFraction).
	MutexFraction int
}

// Profile defaults.
const (
	DefaultBlockRate     = 10_000
	DefaultMutexFraction = 10
)

// Profiles are an agent's profiles in pprof's format: CPU, block and mutex
// from StartProfile to StopProfile, the heap at StopProfile.
type Profiles struct {
	CPU, Block, Mutex, Heap []byte
}

// Errors of StartProfile and StopProfile.
var (
	ErrProfiling    = errdefs.New(errdefs.ErrAlreadyExists, "PROFILING", "a profile of this agent is already running, started by another tunnel (one at a time): wait for it to stop")
	ErrNotProfiling = errdefs.New(errdefs.ErrFailedCheck, "NOT_PROFILING", "this tunnel started no profile of the agent")
)
