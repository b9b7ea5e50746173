// Package tunnel is the wire between tether's daemon and an agent: one
// connection (in production, carried by the Kubernetes API's port-forward),
// a handshake that proves the daemon holds the agent's token, then a yamux
// session whose streams each carry one role: the gRPC control API, or one
// proxied connection. spec.md beside this file defines the bytes.
package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ProtocolVersion is the handshake version this build speaks.
const ProtocolVersion = 2

// Config tunes a tunnel. Both ends must use the same Token.
type Config struct {
	// Token is the shared secret the daemon generated when it installed the
	// agent. The agent refuses a client that does not present it. 16 to 255
	// bytes.
	Token []byte

	// HandshakeTimeout bounds the handshake and the reading of each new
	// stream's header, so a silent peer cannot hold resources.
	HandshakeTimeout time.Duration

	// KeepAliveInterval is how often each end pings the other.
	KeepAliveInterval time.Duration

	// DeadPeerTimeout is how long a ping or a frame write may wait before the
	// peer is declared dead and the session closed. A dead peer is noticed
	// within KeepAliveInterval + DeadPeerTimeout.
	DeadPeerTimeout time.Duration

	// MaxStreamWindow is the per-stream flow-control window in bytes; larger
	// windows carry more bytes per round trip on long-latency paths.
	MaxStreamWindow uint32

	// StreamCloseTimeout is how long a stream closed on one side waits for
	// the other side's close before it is torn down anyway.
	StreamCloseTimeout time.Duration

	// AcceptBacklog is how many opened streams may wait for Accept.
	AcceptBacklog int

	// Logger receives the session's diagnostics. Nil discards them.
	Logger *slog.Logger

	// Admit, on the server side, is asked once the client has proved it
	// holds Token, before the server's verdict is sent: false refuses the
	// client as for a wrong token. A token good for one tunnel only is
	// spent here, so that a client never hears "accepted" for a tunnel the
	// server then closes. Nil admits every client holding the token.
	Admit func() bool
}

// DefaultConfig returns a Config that notices a dead peer within 2 s, with
// token as the shared secret.
func DefaultConfig(token []byte) Config {
	return Config{
		Token:              token,
		HandshakeTimeout:   10 * time.Second,
		KeepAliveInterval:  500 * time.Millisecond,
		DeadPeerTimeout:    1 * time.Second,
		MaxStreamWindow:    4 << 20,
		StreamCloseTimeout: 30 * time.Second,
		AcceptBacklog:      1024,
	}
}

// Token length bounds.
const (
	MinTokenLen = 16
	MaxTokenLen = 255
)

// Validate checks the Config without I/O.
func (c Config) Validate() error {
	var errs []error
	if n := len(c.Token); n < MinTokenLen || n > MaxTokenLen {
		errs = append(errs, fmt.Errorf("token is %d bytes; it must be %d to %d", n, MinTokenLen, MaxTokenLen))
	}
	for name, d := range map[string]time.Duration{
		"HandshakeTimeout": c.HandshakeTimeout, "KeepAliveInterval": c.KeepAliveInterval,
		"DeadPeerTimeout": c.DeadPeerTimeout, "StreamCloseTimeout": c.StreamCloseTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	if c.MaxStreamWindow < 256<<10 {
		errs = append(errs, fmt.Errorf("MaxStreamWindow must be at least 256 KiB, got %d", c.MaxStreamWindow))
	}
	if c.AcceptBacklog <= 0 {
		errs = append(errs, fmt.Errorf("AcceptBacklog must be positive, got %d", c.AcceptBacklog))
	}
	return errors.Join(errs...)
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
