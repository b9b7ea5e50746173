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

	// KeepAliveInterval is how long this end waits with nothing received
	// from the peer before it pings it. A link carrying traffic from the
	// peer is never pinged.
	KeepAliveInterval time.Duration

	// DeadPeerTimeout is how long the peer has, once a ping has been
	// written to the connection (not merely queued behind data), to send
	// anything at all; silent that long, it is declared dead and the
	// session closed. A dead peer on an idle link is thus noticed within
	// KeepAliveInterval + DeadPeerTimeout plus two checks (a quarter of
	// the shorter of the two each): 1.75 s with the defaults. The bytes
	// queued below the tunnel ahead of the ping (socket and API server
	// buffers) must drain within DeadPeerTimeout, or the peer must be
	// sending meanwhile.
	DeadPeerTimeout time.Duration

	// WriteTimeout bounds one frame's write to the connection: a write
	// blocked longer closes the session as a dead peer (a live peer always
	// reads). It sets the slowest link a tunnel survives under bulk:
	// 256 KiB frames (Join's) in 10 s need about 210 kbit/s. A dead peer
	// under bulk sent to it is noticed within WriteTimeout when its
	// connection stops taking bytes before this end's ping goes out. A
	// frame's wait in the send queue plus its write is bounded by
	// 6 x WriteTimeout (yamux's ConnectionWriteTimeout): a stream write
	// that exceeds it fails, the session goes on.
	WriteTimeout time.Duration

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

// DefaultConfig returns a Config that notices a dead peer on an idle link
// within 2 s (see DeadPeerTimeout), with token as the shared secret.
func DefaultConfig(token []byte) Config {
	return Config{
		Token:              token,
		HandshakeTimeout:   10 * time.Second,
		KeepAliveInterval:  500 * time.Millisecond,
		DeadPeerTimeout:    1 * time.Second,
		WriteTimeout:       10 * time.Second,
		MaxStreamWindow:    4 << 20,
		StreamCloseTimeout: 30 * time.Second,
		AcceptBacklog:      1024,
	}
}

// DaemonDeadPeerTimeout is DeadPeerTimeout at the daemon's end.
const DaemonDeadPeerTimeout = 5 * time.Second

// DaemonConfig is DefaultConfig for the daemon's end of a tunnel: a
// silent agent has DaemonDeadPeerTimeout (5 s) to answer a ping, not 1 s.
// An agent starved of CPU (a pod at its CPU limit, or thousands of
// requests queued on its one thread) can be silent for more than a second
// though alive, and declaring it dead would end its tunnel and send the
// intercept's traffic to the app for nothing. A dead agent's connection
// closes at once in practice (its process or pod is gone, the API server
// ends the port-forward); the timeout covers only a link gone silent. The
// agent's end keeps 1 s: there a silent daemon means the laptop is gone,
// and the agent sends the intercepted traffic back to the app.
func DaemonConfig(token []byte) Config {
	c := DefaultConfig(token)
	c.DeadPeerTimeout = DaemonDeadPeerTimeout
	return c
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
		"DeadPeerTimeout": c.DeadPeerTimeout, "WriteTimeout": c.WriteTimeout,
		"StreamCloseTimeout": c.StreamCloseTimeout,
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

// sendQueueTimeout is yamux's ConnectionWriteTimeout: how long a frame may
// wait to be sent, queue included. Several frames may queue before it
// on a slow link; the dead-peer check ends a stuck session sooner.
func (c Config) sendQueueTimeout() time.Duration { return 6 * c.WriteTimeout }

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
