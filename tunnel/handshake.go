package tunnel

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// magic opens every handshake message.
const magic = "TTHR"

// nonceLen is the length of each side's challenge; macLen of each proof.
const (
	nonceLen = 32
	macLen   = sha256.Size
)

// Handshake status codes, sent by the server.
const (
	statusOK                 byte = 0
	statusVersionUnsupported byte = 1
	statusBadToken           byte = 2
)

// Labels that keep the server's proof from being replayed as the client's.
const (
	serverLabel = "tether tunnel v2 server"
	clientLabel = "tether tunnel v2 client"
)

// Errors a handshake can end with; test with errors.Is.
var (
	ErrBadToken           = errors.New("tunnel: the peer refused the token")
	ErrVersionUnsupported = errors.New("tunnel: the peer does not speak this protocol version")
	ErrNotTether          = errors.New("tunnel: the peer is not a tether tunnel endpoint")
	// ErrPeerUnproven: the server could not prove it holds the token, so
	// the client sent nothing that depends on it. It also matches
	// ErrBadToken: the two ends do not share a token.
	ErrPeerUnproven = fmt.Errorf("%w: the peer did not prove it holds our token (the agent was reinstalled with another token, or the peer is not our agent)", ErrBadToken)
)

// proof is HMAC-SHA256(token, label || first || second).
func proof(token []byte, label string, first, second []byte) []byte {
	m := hmac.New(sha256.New, token)
	m.Write([]byte(label))
	m.Write(first)
	m.Write(second)
	return m.Sum(nil)
}

func newNonce() ([]byte, error) {
	n := make([]byte, nonceLen)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("tunnel: make a challenge: %w", err)
	}
	return n, nil
}

// clientHandshake challenges the server, checks its proof, and only then
// answers the server's challenge with its own: the token never travels,
// and nothing derived from it goes to a peer that has not proven it holds
// it (spec.md, section 1).
func clientHandshake(conn net.Conn, cfg Config) error {
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})

	nc, err := newNonce()
	if err != nil {
		return err
	}
	hello := append(append([]byte(magic), ProtocolVersion), nc...)
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("tunnel: send hello: %w", err)
	}
	var head [6]byte
	if _, err := io.ReadFull(conn, head[:4]); err != nil {
		return fmt.Errorf("tunnel: read handshake reply: %w", err)
	}
	if string(head[:4]) != magic {
		return ErrNotTether
	}
	if _, err := io.ReadFull(conn, head[4:]); err != nil {
		return fmt.Errorf("tunnel: read handshake reply: %w", err)
	}
	if head[5] != statusOK {
		return readRefusal(conn, head[4], head[5])
	}
	challenge := make([]byte, nonceLen+macLen)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return fmt.Errorf("tunnel: read the server's challenge: %w", err)
	}
	ns, serverProof := challenge[:nonceLen], challenge[nonceLen:]
	if !hmac.Equal(serverProof, proof(cfg.Token, serverLabel, nc, ns)) {
		return ErrPeerUnproven
	}
	if _, err := conn.Write(proof(cfg.Token, clientLabel, ns, nc)); err != nil {
		return fmt.Errorf("tunnel: send proof: %w", err)
	}
	var verdict [1]byte
	if _, err := io.ReadFull(conn, verdict[:]); err != nil {
		return fmt.Errorf("tunnel: read the server's verdict: %w", err)
	}
	if verdict[0] != statusOK {
		return readRefusal(conn, head[4], verdict[0])
	}
	return nil
}

// readRefusal reads a refusal's reason and returns its error.
func readRefusal(conn net.Conn, version, status byte) error {
	var n [1]byte
	msg := []byte{}
	if _, err := io.ReadFull(conn, n[:]); err == nil {
		msg = make([]byte, n[0])
		_, _ = io.ReadFull(conn, msg)
	}
	switch status {
	case statusVersionUnsupported:
		return fmt.Errorf("%w: we speak %d, it speaks %d (%s)", ErrVersionUnsupported, ProtocolVersion, version, msg)
	case statusBadToken:
		return ErrBadToken
	default:
		return fmt.Errorf("tunnel: handshake status %d: %s", status, msg)
	}
}

// serverHandshake reads the client's challenge, proves it holds the token,
// challenges the client in turn and checks its proof.
func serverHandshake(conn net.Conn, cfg Config) error {
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	_ = conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})

	var head [5]byte
	if _, err := io.ReadFull(conn, head[:4]); err != nil {
		return fmt.Errorf("tunnel: read hello: %w", err)
	}
	if string(head[:4]) != magic {
		return ErrNotTether
	}
	if _, err := io.ReadFull(conn, head[4:]); err != nil {
		return fmt.Errorf("tunnel: read hello: %w", err)
	}
	if head[4] != ProtocolVersion {
		reason := fmt.Sprintf("agent speaks tunnel protocol %d", ProtocolVersion)
		_, _ = conn.Write(append(append([]byte(magic), ProtocolVersion, statusVersionUnsupported, byte(len(reason))), reason...))
		return fmt.Errorf("%w: client speaks %d, we speak %d", ErrVersionUnsupported, head[4], ProtocolVersion)
	}
	nc := make([]byte, nonceLen)
	if _, err := io.ReadFull(conn, nc); err != nil {
		return fmt.Errorf("tunnel: read the client's challenge: %w", err)
	}
	ns, err := newNonce()
	if err != nil {
		return err
	}
	reply := append(append([]byte(magic), ProtocolVersion, statusOK), ns...)
	reply = append(reply, proof(cfg.Token, serverLabel, nc, ns)...)
	if _, err := conn.Write(reply); err != nil {
		return fmt.Errorf("tunnel: send challenge: %w", err)
	}
	clientProof := make([]byte, macLen)
	if _, err := io.ReadFull(conn, clientProof); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A client closes here when our proof did not match its token.
			return fmt.Errorf("%w: the client left without a proof (its token differs)", ErrBadToken)
		}
		return fmt.Errorf("tunnel: read the client's proof: %w", err)
	}
	if !hmac.Equal(clientProof, proof(cfg.Token, clientLabel, ns, nc)) {
		reason := "token refused"
		_, _ = conn.Write(append([]byte{statusBadToken, byte(len(reason))}, reason...))
		return ErrBadToken
	}
	if cfg.Admit != nil && !cfg.Admit() {
		reason := "token no longer accepted"
		_, _ = conn.Write(append([]byte{statusBadToken, byte(len(reason))}, reason...))
		return fmt.Errorf("%w: %s", ErrBadToken, reason)
	}
	if _, err := conn.Write([]byte{statusOK}); err != nil {
		return fmt.Errorf("tunnel: send verdict: %w", err)
	}
	return nil
}
