// Package rollback implements `tether rollback`.
package rollback

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// RollbackOptions are the flags and dependencies of `tether rollback`.
type RollbackOptions struct {
	genericiooptions.IOStreams

	Workload string
	All      bool
	Force    bool
	Output   string

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

// NewCmdRollback returns the rollback command; runF replaces Run in tests.
func NewCmdRollback(f *cmdutil.Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	o := &RollbackOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
	}
	cmd := &cobra.Command{
		Use:   "rollback [WORKLOAD | --all]",
		Short: "Restore exactly what tether changed in the cluster, from its journal there",
		Long: `Remove tether's agent and restore every object tether changed to exactly what
it was, from the journal tether wrote in the cluster before changing anything.
It works from any machine, also after the one that made the change died. A
rollback interrupted halfway can be run again and finishes the job.

If someone changed an object after tether did, rollback refuses to undo
their change; --force restores tether's journaled original anyway.`,
		Example: `  tether rollback deploy/orders
  tether rollback --all -n shop
  tether rollback orders --force`,
		Args: cmdutil.Args(cobra.MaximumNArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "roll back every workload tether changed in the namespace")
	cmd.Flags().BoolVar(&o.Force, "force", false, "restore objects even if someone changed them after tether did")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD, if given, and resolves the namespace.
func (o *RollbackOptions) Complete(args []string) error {
	if len(args) == 1 {
		o.Workload = args[0]
	}
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *RollbackOptions) Validate() error {
	if o.Workload != "" && o.All {
		return errdefs.User("name one workload or pass --all, not both")
	}
	if o.Workload == "" && !o.All {
		return errdefs.User("name the workload to roll back, or pass --all for every one in the namespace")
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run asks the daemon (started if needed) to roll back.
func (o *RollbackOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	results, err := client.Rollback(ctx, daemon.RollbackRequest{Namespace: o.Ns, Workload: o.Workload, All: o.All, Force: o.Force})
	if err != nil {
		return err
	}
	if results == nil {
		results = []daemon.RollbackResult{}
	}
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, results); err != nil {
			return err
		}
	} else if len(results) == 0 {
		fmt.Fprintf(o.Out, "Nothing to roll back in namespace %s.\n", o.Ns)
	}
	failed := 0
	for _, r := range results {
		if o.Output == cmdutil.OutputText {
			fmt.Fprintf(o.Out, "%s in %s:\n", r.Workload, r.Namespace)
			for _, s := range r.Steps {
				if s.Reason != "" {
					fmt.Fprintf(o.Out, "  %-10s %s: %s\n", s.Action, s.Object, s.Reason)
					continue
				}
				fmt.Fprintf(o.Out, "  %-10s %s\n", s.Action, s.Object)
			}
		}
		if r.Error != "" {
			failed++
			fmt.Fprintf(o.ErrOut, "%s: %s\n", r.Workload, r.Error)
		}
	}
	if failed > 0 {
		return errdefs.User("%d of %d rollbacks did not finish; fix what they say and run tether rollback again", failed, len(results))
	}
	return nil
}
