// Package runcmd is what `tether run` and `tether intercept ... -- CMD`
// share: the run the daemon holds for the local process, the process's
// environment in proxy mode, the --forward listeners, and running the
// process itself (signals reach it first, its exit status is returned).
package runcmd

import (
	"context"
	"errors"
	"net"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Session is a run the daemon holds while the local process runs.
type Session struct {
	Info daemon.RunInfo

	cancel context.CancelFunc
	ended  chan struct{}
	err    error // why the run ended, once ended is closed
}

// Start asks the daemon for a run and returns once it is ready, or with
// the reason it could not start. The run lasts until Close, or until the
// daemon ends it (Ended). It does not end with ctx: the caller's process
// must be able to finish (Ctrl-C reaches it first) before the run goes.
func Start(ctx context.Context, svc daemon.Service, req daemon.RunRequest, progress func(string)) (*Session, error) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Session{cancel: cancel, ended: make(chan struct{})}
	ready := make(chan daemon.RunInfo, 1)
	go func() {
		defer close(s.ended)
		s.err = svc.Run(rctx, req, progress, func(info daemon.RunInfo) { ready <- info })
		if s.err == nil && rctx.Err() == nil {
			s.err = errors.New("the daemon ended the run")
		}
	}()
	select {
	case info := <-ready:
		s.Info = info
		return s, nil
	case <-s.ended:
		cancel()
		return nil, s.err
	case <-ctx.Done():
		cancel()
		<-s.ended
		return nil, errdefs.Mark(errdefs.ErrCanceled, ctx.Err())
	}
}

// Ended is closed when the run ended; Err then says why.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// Err is why the run ended before Close: nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.ended:
		return s.err
	default:
		return nil
	}
}

// Close ends the run and waits until the daemon let it go.
func (s *Session) Close() {
	s.cancel()
	<-s.ended
}

// Dial connects to addr from the run's pod (names resolved there).
func (s *Session) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return daemon.DialRun(ctx, s.Info.DialSocket, s.Info.ID, addr)
}
