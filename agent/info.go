package agent

import (
	"context"
	"time"

	"github.com/tetherkube/tether/internal/buildinfo"
)

// Info describes a running agent.
type Info struct {
	Version      string
	Commit       string
	PodName      string
	PodNamespace string
	StartedAt    time.Time
}

// InfoService reports what an agent is. Both the agent itself and the
// gRPC client that reaches it through the tunnel implement it.
type InfoService interface {
	Info(ctx context.Context) (Info, error)
}

// Info reports the agent's build and the pod it runs in.
func (a *Agent) Info(context.Context) (Info, error) {
	b := buildinfo.Get()
	return Info{
		Version:      b.Version,
		Commit:       b.Commit,
		PodName:      a.cfg.PodName,
		PodNamespace: a.cfg.PodNamespace,
		StartedAt:    a.started,
	}, nil
}
