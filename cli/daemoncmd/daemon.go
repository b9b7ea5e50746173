// Package daemoncmd implements the hidden `tether daemon run`, the process
// `tether connect` starts in the background.
package daemoncmd

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon/server"
)

// NewCmdDaemon returns `tether daemon`.
func NewCmdDaemon(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "daemon",
		Short:  "Run tether's local daemon (started for you by `tether connect`)",
		Hidden: true,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "run",
		Short: "Serve the daemon API for the current kube context until `tether quit`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := f.Target()
			if err != nil {
				return err
			}
			if err := t.Paths.EnsureDir(); err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(f.IOStreams.ErrOut, nil)).With("context", t.Context)
			klog.SetSlogLogger(log.With("source", "client-go"))
			rc, err := f.KubeConfig.ToRESTConfig()
			if err != nil {
				return err
			}
			rc.QPS, rc.Burst = 50, 100
			d, err := server.New(rc, t.Context, log)
			if err != nil {
				return err
			}
			log.Info("daemon starting", "pid", os.Getpid(), "server", rc.Host)
			return server.Serve(cmd.Context(), d, t.Paths.Socket)
		},
	})
	return cmd
}
