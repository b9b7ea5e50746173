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
	var output string
	cmd := &cobra.Command{
		Use:   "quit",
		Short: "End every intercept and stop the daemon (agents stay and serve the app; `tether rollback` removes them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmdutil.ValidateOutput(output); err != nil {
				return err
			}
			report := func(stopped bool, text string) error {
				if output != cmdutil.OutputText {
					return cmdutil.PrintStructured(f.IOStreams.Out, output, map[string]bool{"stopped": stopped})
				}
				_, err := fmt.Fprintln(f.IOStreams.Out, text)
				return err
			}
			client, done, err := f.Daemon(cmd.Context(), false)
			if errors.Is(err, cmdutil.ErrNoDaemon) {
				return report(false, "No daemon runs for this context.")
			}
			if err != nil {
				return err
			}
			defer done()
			if err := client.Quit(cmd.Context()); err != nil {
				return err
			}
			return report(true, "Daemon stopped; intercepts ended.")
		},
	}
	cmdutil.AddOutputFlag(cmd, &output)
	return cmd
}
