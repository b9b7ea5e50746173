package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/pktfilter"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Capture streams a pod's packets through an inspection agent.
func (d *Daemon) Capture(ctx context.Context, req daemon.CaptureRequest, progress func(string), emit func([]agent.CapturedPacket) error) (agent.CaptureStats, error) {
	if _, err := pktfilter.Parse(req.Filter); err != nil {
		return agent.CaptureStats{}, errdefs.Mark(errdefs.ErrUser, err)
	}
	pod := strings.TrimPrefix(strings.TrimPrefix(req.Pod, "pod/"), "pods/")
	if err := d.permitted(ctx, access.Inspect, req.Namespace, access.Objects{}, "capture (and dns)", inspectRole); err != nil {
		return agent.CaptureStats{}, err
	}
	link, err := d.inspectAgent(ctx, inspect.Request{Namespace: req.Namespace, Pod: pod, Container: req.Container,
		AgentImage: req.AgentImage, Job: agent.JobCapture}, progress)
	if err != nil {
		return agent.CaptureStats{}, err
	}
	defer link.Close()
	progress(fmt.Sprintf("capturing on %s of pod %s", ifaceOr(req.Interface), pod))
	d.log.Info("capture", "pod", req.Namespace+"/"+pod, "filter", req.Filter)
	stats, err := link.Agent().Capture(ctx, agent.CaptureRequest{Interface: req.Interface, Filter: req.Filter,
		Snaplen: req.Snaplen, Count: req.Count, Duration: req.Duration}, emit)
	if errors.Is(err, agent.ErrBadFilter) || errors.Is(err, agent.ErrNoCapNetRaw) {
		return stats, errdefs.Mark(errdefs.ErrUser, err)
	}
	return stats, err
}

func ifaceOr(s string) string {
	if s == "" {
		return "eth0"
	}
	return s
}
