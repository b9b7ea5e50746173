package server

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/tunnel"
)

// keyring holds the token the agent accepts for new tunnels. A fixed token
// (the sidecar's, from its Secret) is accepted for the agent's life. A
// bootstrap token (an inspection agent's, written in its pod's spec where
// anyone who may read the pod sees it) is accepted for one tunnel, and only
// until its deadline: the daemon that opens that tunnel rotates it at once,
// and from then on only the rotated token opens tunnels.
type keyring struct {
	mu    sync.Mutex
	token []byte
	// bootstrap: token is the bootstrap token, not yet rotated.
	bootstrap bool
	// deadline is when the bootstrap token stops being accepted.
	deadline time.Time
	// used: a tunnel opened with the bootstrap token already.
	used bool
	// rotatable: the token may be rotated (an inspection agent's).
	rotatable bool
	now       func() time.Time
}

func newKeyring(token []byte, bootstrapTTL time.Duration, now func() time.Time) *keyring {
	k := &keyring{token: token, now: now}
	if bootstrapTTL > 0 {
		k.bootstrap, k.rotatable, k.deadline = true, true, now().Add(bootstrapTTL)
	}
	return k
}

// handshakeToken returns the token to run the next handshake with. When no
// token is accepted (the bootstrap token expired or was used, and none was
// rotated in), it returns a random one nobody holds, so the client is
// refused as for a wrong token; why says why, for the log.
func (k *keyring) handshakeToken() (token []byte, why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case !k.bootstrap:
		return k.token, ""
	case k.used:
		why = "the bootstrap token was used already"
	case !k.now().Before(k.deadline):
		why = "the bootstrap token expired"
	default:
		return k.token, ""
	}
	nobody := make([]byte, 32)
	rand.Read(nobody)
	return nobody, why
}

// opened records a tunnel opened with token. It reports false when the
// token is no longer accepted: another tunnel used the bootstrap token
// meanwhile, or the token was rotated during the handshake.
func (k *keyring) opened(token []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !bytes.Equal(token, k.token) {
		return false
	}
	if k.bootstrap {
		if k.used {
			return false
		}
		k.used = true
	}
	return true
}

// rotate makes token the one accepted from now on.
func (k *keyring) rotate(token []byte) error {
	if n := len(token); n < tunnel.MinTokenLen || n > tunnel.MaxTokenLen {
		return fmt.Errorf("token of %d bytes, want %d to %d: %w", n, tunnel.MinTokenLen, tunnel.MaxTokenLen, agent.ErrBadToken)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.rotatable {
		return agent.ErrFixedToken
	}
	k.token, k.bootstrap = bytes.Clone(token), false
	return nil
}
