package session

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
)

// EndOptions are the flags and dependencies of `tether session end`.
type EndOptions struct {
	Options
}

// NewCmdEnd returns `session end`; runF replaces Run in tests.
func NewCmdEnd(f *cmdutil.Factory, runF func(context.Context, *EndOptions) error) *cobra.Command {
	o := &EndOptions{Options: newOptions(f)}
	cmd := &cobra.Command{
		Use:   "end",
		Short: "End the session: keep the changes, drop the snapshot",
		Long: `End the namespace's session: the cluster stays as it is now and the
snapshot's Secrets are deleted. After it, 'session rollback' has nothing to
restore from.`,
		Example: `  tether session end -n shop`,
		Args:    cmdutil.Args(cobra.NoArgs),
		RunE:    cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete resolves the namespace.
func (o *EndOptions) Complete([]string) error { return o.complete() }

// Validate checks the options without I/O.
func (o *EndOptions) Validate() error { return cmdutil.ValidateOutput(o.Output) }

// Run asks the daemon to end the session.
func (o *EndOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	info, err := client.SessionEnd(ctx, o.Ns)
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, info)
	}
	fmt.Fprintf(o.Out, "Session %s in %s ended: the changes stay, the snapshot is dropped.\n", info.Name, info.Namespace)
	return nil
}
