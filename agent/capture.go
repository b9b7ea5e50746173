package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetherkube/tether/agent/internal/capture"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/pktfilter"
)

// CaptureRequest asks for the packets of one interface.
type CaptureRequest struct {
	Interface string
	Filter    string
	Snaplen   int
	// Count and Duration end the capture; zero means no limit.
	Count    uint64
	Duration time.Duration
}

// CapturedPacket is one Ethernet frame.
type CapturedPacket struct {
	Timestamp time.Time
	Length    int
	Data      []byte
}

// CaptureStats are the kernel's counts for a capture.
type CaptureStats struct {
	Received, Dropped uint64
}

// Errors of Capture; test with errors.Is.
var (
	ErrBadFilter   = errdefs.New(errdefs.ErrUser, "BAD_FILTER", "bad capture filter")
	ErrNoCapNetRaw = errdefs.New(errdefs.ErrUser, "NO_CAP_NET_RAW", "capturing needs CAP_NET_RAW")
)

// Capture captures packets, calling emit for each, until the request's
// count or duration, ctx's end, or emit's error.
func (s *sessionService) Capture(ctx context.Context, req CaptureRequest, emit func(CapturedPacket) error) (CaptureStats, error) {
	return runCapture(ctx, req, emit)
}

func runCapture(ctx context.Context, req CaptureRequest, emit func(CapturedPacket) error) (CaptureStats, error) {
	if req.Interface == "" {
		req.Interface = "eth0"
	}
	if req.Snaplen == 0 {
		req.Snaplen = capture.DefaultSnaplen
	}
	if _, err := pktfilter.Parse(req.Filter); err != nil {
		return CaptureStats{}, fmt.Errorf("%w: %v", ErrBadFilter, err)
	}
	c, err := capture.Open(capture.Config{Interface: req.Interface, Filter: req.Filter, Snaplen: req.Snaplen})
	if err != nil {
		if errors.Is(err, capture.ErrNoPermission) {
			return CaptureStats{}, fmt.Errorf("%w: %v", ErrNoCapNetRaw, err)
		}
		return CaptureStats{}, err
	}
	defer c.Close()
	if req.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Duration)
		defer cancel()
	}
	var stats CaptureStats
	for n := uint64(0); req.Count == 0 || n < req.Count; n++ {
		data, ci, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break // the duration ended, or the caller stopped
			}
			return stats, err
		}
		if err := emit(CapturedPacket{Timestamp: ci.Timestamp, Length: ci.Length, Data: data}); err != nil {
			return stats, err
		}
	}
	received, dropped, err := c.Stats()
	if err != nil {
		return stats, err
	}
	stats.Received, stats.Dropped = uint64(received), uint64(dropped)
	return stats, nil
}
