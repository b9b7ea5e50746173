package cmdutil

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Options is the shape every command's options take: Complete resolves
// names from the arguments and the dependencies, Validate checks the
// result without I/O, Run does the work without touching the Factory.
type Options interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// RunE returns a cobra RunE that runs o's Complete and Validate, then
// runF when it is set (tests capture the options there), else o.Run.
func RunE[O Options](o O, runF func(context.Context, O) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		if runF != nil {
			return runF(cmd.Context(), o)
		}
		return o.Run(cmd.Context())
	}
}

// Args marks the errors of a cobra argument check as the user's, with
// where to read what the command takes: `tether intercept` without its
// WORKLOAD exits 2, not 1.
func Args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return errdefs.User("%v: %s\nSee '%s --help'.", err, cmd.Use, cmd.CommandPath())
		}
		return nil
	}
}
