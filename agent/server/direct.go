package server

import (
	"context"
	"net"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// maxDialBack bounds a dial-back whatever the daemon asks.
const maxDialBack = 10 * time.Second

// dialBack opens the direct path of sess (tunnel/spec.md, section 4): it
// connects to the daemon, trusting only its certificate, and proves with
// the token it accepts now (a spent bootstrap token opens nothing). While
// the direct session lives, sess's intercepts send their connections over
// it and its dial streams are served; it ends with sess.
func (a *Agent) dialBack(ctx context.Context, sess *tunnel.Session, req agent.DialBackRequest) error {
	if req.Address == "" || len(req.Certificate) == 0 {
		return agent.ErrBadDialBack
	}
	timeout := req.Timeout
	if timeout <= 0 || timeout > maxDialBack {
		timeout = agent.DefaultDirectTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	token, why := a.keys.handshakeToken()
	cfg := tunnel.DefaultConfig(token)
	cfg.Logger = a.log
	cfg.Admit = func() bool {
		if a.keys.opened(token) {
			return true
		}
		why = "the token was used or rotated during the handshake"
		return false
	}
	direct, err := a.dialDirect(dctx, req.Address, req.Certificate, cfg)
	if err != nil {
		a.log.Warn("direct path not opened", "to", req.Address, "err", err, "why", why)
		return errdefs.Withf(agent.ErrNoDirectPath, "%v", err)
	}
	// The control API stays on the port-forward tunnel.
	direct.ControlListener().Close()
	a.mu.Lock()
	old := a.directs[sess]
	a.directs[sess] = direct
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	a.log.Info("direct path open", "to", req.Address)
	sctx, stop := context.WithCancel(context.Background())
	go a.serveDials(sctx, direct)
	go func() {
		defer stop()
		select {
		case <-direct.Done():
			a.log.Warn("the direct path ended; the port-forward tunnel carries the connections again", "to", req.Address)
		case <-sess.Done():
			direct.Close()
		}
		a.mu.Lock()
		if a.directs[sess] == direct {
			delete(a.directs, sess)
		}
		a.mu.Unlock()
	}()
	return nil
}

// openConn opens a conn stream to the laptop through sess, for one
// intercepted connection: on sess's direct path while that lives, else on
// sess.
func (a *Agent) openConn(ctx context.Context, sess *tunnel.Session) (net.Conn, error) {
	a.mu.Lock()
	direct := a.directs[sess]
	a.mu.Unlock()
	if direct != nil {
		st, err := direct.Open(ctx, tunnel.RoleConn, nil)
		if err == nil {
			return st, nil
		}
		a.log.Info("direct path failed to take a connection; using the port-forward tunnel", "err", err)
	}
	return sess.Open(ctx, tunnel.RoleConn, nil)
}
