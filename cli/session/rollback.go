package session

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// RollbackOptions are the flags and dependencies of `tether session rollback`.
type RollbackOptions struct {
	Options
	Force   bool
	Timeout time.Duration
}

// NewCmdRollback returns `session rollback`; runF replaces Run in tests.
func NewCmdRollback(f *cmdutil.Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	o := &RollbackOptions{Options: newOptions(f)}
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Put every object back as the session's snapshot has it",
		Long: `Restore every object that changed since the session started, recreate the
deleted ones and delete the ones created meanwhile (of the session's kinds),
keeping the workloads serving: ConfigMaps and Secrets first, then Services
and policies, then the workloads, waiting for their rollouts, then the
deletes. tether's own intercepts and recordings begun during the session
are rolled back first, as 'tether rollback' does. The result is verified
field for field against the snapshot.

An object changed in a way that cannot be undone in place (a new selector,
an immutable ConfigMap) is refused, with nothing changed, exit code 3;
--force deletes and recreates it. An interrupted rollback is finished by
running it again. The session stays: 'tether session end' drops it.`,
		Example: `  tether session rollback -n shop
  tether session rollback -n shop --force`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "delete and recreate objects that cannot be restored in place")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for each workload's rollout")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete resolves the namespace.
func (o *RollbackOptions) Complete([]string) error { return o.complete() }

// Validate checks the options without I/O.
func (o *RollbackOptions) Validate() error {
	if o.Timeout < time.Second {
		return errdefs.User("--timeout %s: give at least 1s", o.Timeout)
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run asks the daemon to roll back, printing its progress.
func (o *RollbackOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := client.SessionRollback(ctx, daemon.SessionRollbackRequest{Namespace: o.Ns, Force: o.Force, RolloutTimeout: int64(o.Timeout / time.Second)},
		func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, res)
	}
	for _, r := range res.Tether {
		for _, s := range r.Steps {
			fmt.Fprintf(o.Out, "  %-10s %s (tether's %s)\n", s.Action, s.Object, r.Workload)
		}
	}
	for _, s := range res.Steps {
		line := fmt.Sprintf("  %-10s %s", s.Action, s.Object)
		if s.Reason != "" {
			line += ": " + s.Reason
		}
		if s.Note != "" {
			line += " (" + s.Note + ")"
		}
		fmt.Fprintln(o.Out, line)
	}
	fmt.Fprintf(o.Out, "Session %s in %s rolled back: %d objects restored, verified against the snapshot. "+
		"`tether session end -n %s` drops the snapshot.\n", res.Session.Name, res.Session.Namespace, len(res.Steps), res.Session.Namespace)
	return nil
}
