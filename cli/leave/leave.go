// Package leave implements `tether leave`.
package leave

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/internal/errdefs"
)

// NewCmdLeave returns the leave command.
func NewCmdLeave(f *cmdutil.Factory) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "leave WORKLOAD",
		Short: "Stop an intercept: the workload's traffic goes to its own pods again",
		Long: `Stop intercepting WORKLOAD. The agent stays in the pods and passes traffic
to the app, so leaving restarts nothing; ` + "`tether rollback`" + ` removes it.`,
		Example: `  tether leave deploy/orders`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cmdutil.ValidateOutput(output); err != nil {
				return err
			}
			t, err := f.Target()
			if err != nil {
				return err
			}
			client, done, err := f.Daemon(cmd.Context(), false)
			if errors.Is(err, cmdutil.ErrNoDaemon) {
				return errdefs.Mark(errdefs.ErrUser, fmt.Errorf("%s is not intercepted: %w", args[0], err))
			}
			if err != nil {
				return err
			}
			defer done()
			if err := client.Leave(cmd.Context(), t.Namespace, args[0]); err != nil {
				return err
			}
			if output != cmdutil.OutputText {
				return cmdutil.PrintStructured(f.IOStreams.Out, output, map[string]string{"left": args[0], "namespace": t.Namespace})
			}
			fmt.Fprintf(f.IOStreams.Out, "Left %s: its traffic goes to its own pods again.\n", args[0])
			return nil
		},
	}
	cmdutil.AddOutputFlag(cmd, &output)
	return cmd
}
