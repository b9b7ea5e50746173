package runcmd

import (
	"context"
	"errors"
	"testing"

	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestStart(t *testing.T) {
	t.Run("ready, then held until Close", func(t *testing.T) {
		ended := make(chan struct{})
		svc := cmdtest.Serve(t, &cmdtest.FakeService{RunFunc: func(ctx context.Context, _ daemon.RunRequest, _ func(string), ready func(daemon.RunInfo)) error {
			ready(daemon.RunInfo{ID: "r1", Pod: "p"})
			<-ctx.Done()
			close(ended)
			return nil
		}})
		s, err := Start(context.Background(), svc, daemon.RunRequest{Target: "pod/p"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Info.ID != "r1" || s.Err() != nil {
			t.Errorf("info %+v, err %v", s.Info, s.Err())
		}
		s.Close()
		<-ended
	})
	t.Run("the daemon refuses", func(t *testing.T) {
		svc := cmdtest.Serve(t, &cmdtest.FakeService{RunFunc: func(context.Context, daemon.RunRequest, func(string), func(daemon.RunInfo)) error {
			return errdefs.User("no pod \"p\"")
		}})
		_, err := Start(context.Background(), svc, daemon.RunRequest{Target: "pod/p"}, nil)
		if !errors.Is(err, errdefs.ErrUser) {
			t.Errorf("err %v, want the daemon's user error", err)
		}
	})
	t.Run("the daemon ends the run", func(t *testing.T) {
		release := make(chan struct{})
		svc := cmdtest.Serve(t, &cmdtest.FakeService{RunFunc: func(ctx context.Context, _ daemon.RunRequest, _ func(string), ready func(daemon.RunInfo)) error {
			ready(daemon.RunInfo{ID: "r1"})
			<-release
			return errdefs.Unavailable("the link to the agent of pod p ended")
		}})
		s, err := Start(context.Background(), svc, daemon.RunRequest{Target: "pod/p"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		close(release)
		<-s.Ended()
		if err := s.Err(); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("Err() = %v, want the link's end", err)
		}
		s.Close()
	})
	t.Run("canceled before ready", func(t *testing.T) {
		svc := cmdtest.Serve(t, &cmdtest.FakeService{RunFunc: func(ctx context.Context, _ daemon.RunRequest, _ func(string), _ func(daemon.RunInfo)) error {
			<-ctx.Done()
			return ctx.Err()
		}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Start(ctx, svc, daemon.RunRequest{Target: "pod/p"}, nil)
		if !errors.Is(err, errdefs.ErrCanceled) {
			t.Errorf("err %v, want canceled", err)
		}
	})
}
