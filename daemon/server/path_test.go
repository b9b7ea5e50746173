package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// TestBadPathChangesNothing: an unknown --path is the user's error, found
// before the daemon reads or changes anything of the cluster.
func TestBadPathChangesNothing(t *testing.T) {
	ctx := context.Background()
	nop := func(string) {}
	for name, call := range map[string]func(d *Daemon) error{
		"intercept": func(d *Daemon) error {
			_, err := d.Intercept(ctx, daemon.InterceptRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", LocalPort: 3000,
				Path: "vpn"}, nop)
			return err
		},
		"run": func(d *Daemon) error {
			return d.Run(ctx, daemon.RunRequest{Namespace: "shop", Target: "deploy/orders", Path: "vpn"}, nop, func(daemon.RunInfo) {})
		},
	} {
		t.Run(name, func(t *testing.T) {
			d, cs := fakeCluster(t, access.Rule{})
			err := call(d)
			if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), `--path "vpn": want direct, port-forward or auto`) {
				t.Fatalf("err = %v, want the user error naming the values", err)
			}
			if n := len(cs.Actions()); n != 0 {
				t.Errorf("%d calls to the cluster before refusing: %v", n, cs.Actions())
			}
		})
	}
}
