package agent

import (
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
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

// EachPacket adapts a per-packet emit to the batches Capture delivers.
func EachPacket(emit func(CapturedPacket) error) func([]CapturedPacket) error {
	return func(batch []CapturedPacket) error {
		for _, p := range batch {
			if err := emit(p); err != nil {
				return err
			}
		}
		return nil
	}
}
