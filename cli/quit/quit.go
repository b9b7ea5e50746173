// Package quit implements `tether quit`.
package quit

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
)

// NewCmdQuit returns the quit command.
func NewCmdQuit(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "quit",
		Short: "End every intercept and stop the daemon (agents stay and serve the app; `tether rollback` removes them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, done, err := f.Daemon(cmd.Context(), false)
			if errors.Is(err, cmdutil.ErrNoDaemon) {
				fmt.Fprintln(f.IOStreams.Out, "No daemon runs for this context.")
				return nil
			}
			if err != nil {
				return err
			}
			defer done()
			if err := client.Quit(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(f.IOStreams.Out, "Daemon stopped; intercepts ended.")
			return nil
		},
	}
}
