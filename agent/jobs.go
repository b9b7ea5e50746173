package agent

import (
	"fmt"
	"strings"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Job is a set of calls an agent serves. A sidecar agent serves them all;
// an inspection agent only what its command needs, so that its token, if
// stolen, opens no more than that.
type Job string

const (
	// JobIntercept: Intercept, Leave, StepAside, Exchanges, and the dial
	// streams replays open (the sidecar's work).
	JobIntercept Job = "intercept"
	// JobProbe: Probe, QueryDNS and ResolvConf (trace), and ProbeService
	// (the readiness check from a node no intercepted pod runs on).
	JobProbe Job = "probe"
	// JobCapture: Capture (capture and dns).
	JobCapture Job = "capture"
	// JobRun: what `tether run` and `tether env` need from the pod: the
	// dial streams that carry the local process's connections out of the
	// pod, the pod's resolv.conf and DNS queries (ResolvConf, QueryDNS),
	// and the target container's environment and files.
	JobRun Job = "run"
)

// AllJobs are the jobs of an agent started without --serve.
var AllJobs = []Job{JobIntercept, JobProbe, JobCapture, JobRun}

// ErrNotServed: the agent was started without the job the call belongs to
// (its --serve argument).
var ErrNotServed = errdefs.New(errdefs.ErrUser, "NOT_SERVED", "the agent does not serve this call")

// ParseJobs reads a --serve value: jobs separated by commas.
func ParseJobs(v string) ([]Job, error) {
	var out []Job
	for _, s := range strings.Split(v, ",") {
		j := Job(strings.TrimSpace(s))
		switch j {
		case JobIntercept, JobProbe, JobCapture, JobRun:
			out = append(out, j)
		default:
			return nil, fmt.Errorf("job %q: want intercept, probe, capture or run, separated by commas", s)
		}
	}
	return out, nil
}

// JoinJobs writes jobs as a --serve value.
func JoinJobs(jobs []Job) string {
	s := make([]string, len(jobs))
	for i, j := range jobs {
		s[i] = string(j)
	}
	return strings.Join(s, ",")
}
