package tunnel

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// magic opens both handshake messages.
const magic = "TTHR"

// Handshake status codes, sent by the server.
const (
	statusOK                 byte = 0
	statusVersionUnsupported byte = 1
	statusBadToken           byte = 2
)

// Errors a handshake can end with; test with errors.Is.
var (
	ErrBadToken           = errors.New("tunnel: the peer refused the token")
	ErrVersionUnsupported = errors.New("tunnel: the peer does not speak this protocol version")
	ErrNotTether          = errors.New("tunnel: the peer is not a tether tunnel endpoint")
)

// clientHandshake sends the hello and reads the server's verdict.
func clientHandshake(conn net.Conn, cfg Config) error {
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})

	hello := make([]byte, 0, 6+len(cfg.Token))
	hello = append(hello, magic...)
	hello = append(hello, ProtocolVersion, byte(len(cfg.Token)))
	hello = append(hello, cfg.Token...)
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("tunnel: send hello: %w", err)
	}
	var reply [7]byte
	if _, err := io.ReadFull(conn, reply[:4]); err != nil {
		return fmt.Errorf("tunnel: read handshake reply: %w", err)
	}
	if string(reply[:4]) != magic {
		return ErrNotTether
	}
	if _, err := io.ReadFull(conn, reply[4:]); err != nil {
		return fmt.Errorf("tunnel: read handshake reply: %w", err)
	}
	msg := make([]byte, reply[6])
	if _, err := io.ReadFull(conn, msg); err != nil {
		return fmt.Errorf("tunnel: read handshake reason: %w", err)
	}
	switch reply[5] {
	case statusOK:
		return nil
	case statusVersionUnsupported:
		return fmt.Errorf("%w: we speak %d, it speaks %d (%s)", ErrVersionUnsupported, ProtocolVersion, reply[4], msg)
	case statusBadToken:
		return ErrBadToken
	default:
		return fmt.Errorf("tunnel: handshake status %d: %s", reply[5], msg)
	}
}

// serverHandshake reads the hello, checks version and token, and answers.
func serverHandshake(conn net.Conn, cfg Config) error {
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})

	var head [6]byte
	if _, err := io.ReadFull(conn, head[:4]); err != nil {
		return fmt.Errorf("tunnel: read hello: %w", err)
	}
	if string(head[:4]) != magic {
		return ErrNotTether
	}
	if _, err := io.ReadFull(conn, head[4:]); err != nil {
		return fmt.Errorf("tunnel: read hello: %w", err)
	}
	token := make([]byte, head[5])
	if _, err := io.ReadFull(conn, token); err != nil {
		return fmt.Errorf("tunnel: read token: %w", err)
	}
	status, reason, result := statusOK, "", error(nil)
	switch {
	case head[4] != ProtocolVersion:
		status, reason = statusVersionUnsupported, fmt.Sprintf("agent speaks tunnel protocol %d", ProtocolVersion)
		result = fmt.Errorf("%w: client speaks %d, we speak %d", ErrVersionUnsupported, head[4], ProtocolVersion)
	case subtle.ConstantTimeCompare(token, cfg.Token) != 1:
		status, reason, result = statusBadToken, "token refused", ErrBadToken
	}
	reply := append([]byte(magic), ProtocolVersion, status, byte(len(reason)))
	reply = append(reply, reason...)
	if _, err := conn.Write(reply); err != nil && result == nil {
		return fmt.Errorf("tunnel: send handshake reply: %w", err)
	}
	return result
}
