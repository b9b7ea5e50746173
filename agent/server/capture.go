package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/capture"
	"github.com/tetherkube/tether/internal/batchq"
	"github.com/tetherkube/tether/internal/pktfilter"
)

// Capture batching: a batch holds at most CaptureBatchPackets packets and
// CaptureBatchBytes bytes (one packet always fits); CaptureQueueBytes are
// buffered while the tunnel is slower than the capture.
const (
	CaptureBatchPackets = 1024
	CaptureBatchBytes   = 1 << 20
	CaptureQueueBytes   = 16 << 20
	packetOverhead      = 32 // a packet's bookkeeping, beyond its bytes
)

// Capture captures packets until the request's count or duration, ctx's
// end, or emit's error. The capture loop puts packets into a queue and
// another goroutine hands emit whatever has accumulated as one batch, so a
// slow tunnel costs buffering (then kernel drops, counted), not a message
// per packet.
func (s *sessionService) Capture(ctx context.Context, req agent.CaptureRequest, emit func([]agent.CapturedPacket) error) (agent.CaptureStats, error) {
	if err := s.agent.serving("Capture", agent.JobCapture); err != nil {
		return agent.CaptureStats{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := batchq.New[agent.CapturedPacket](CaptureQueueBytes)
	sent := make(chan error, 1)
	go func() {
		sent <- q.Drain(CaptureBatchPackets, CaptureBatchBytes, emit)
	}()
	stats, err := runCapture(ctx, req, func(p agent.CapturedPacket) error {
		return q.Put(ctx, p, len(p.Data)+packetOverhead)
	})
	q.Close()
	if serr := <-sent; serr != nil {
		return stats, serr
	}
	return stats, err
}

func runCapture(ctx context.Context, req agent.CaptureRequest, emit func(agent.CapturedPacket) error) (agent.CaptureStats, error) {
	if req.Interface == "" {
		req.Interface = "eth0"
	}
	if req.Snaplen == 0 {
		req.Snaplen = capture.DefaultSnaplen
	}
	if _, err := pktfilter.Parse(req.Filter); err != nil {
		return agent.CaptureStats{}, fmt.Errorf("%w: %v", agent.ErrBadFilter, err)
	}
	c, err := capture.Open(capture.Config{Interface: req.Interface, Filter: req.Filter, Snaplen: req.Snaplen})
	if err != nil {
		if errors.Is(err, capture.ErrNoPermission) {
			return agent.CaptureStats{}, fmt.Errorf("%w: %v", agent.ErrNoCapNetRaw, err)
		}
		return agent.CaptureStats{}, err
	}
	defer c.Close()
	if req.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Duration)
		defer cancel()
	}
	var stats agent.CaptureStats
	for n := uint64(0); req.Count == 0 || n < req.Count; n++ {
		data, ci, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break // the duration ended, or the caller stopped
			}
			return stats, err
		}
		if err := emit(agent.CapturedPacket{Timestamp: ci.Timestamp, Length: ci.Length, Data: data}); err != nil {
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
