package session

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
)

// StartOptions are the flags and dependencies of `tether session start`.
type StartOptions struct {
	Options
	Name    string
	Include []string
}

// NewCmdStart returns `session start`; runF replaces Run in tests.
func NewCmdStart(f *cmdutil.Factory, runF func(context.Context, *StartOptions) error) *cobra.Command {
	o := &StartOptions{Options: newOptions(f)}
	cmd := &cobra.Command{
		Use:   "start [NAME]",
		Short: "Snapshot the namespace's objects, in the cluster, before you change them",
		Long: `Snapshot every Deployment, StatefulSet, DaemonSet, Service, ConfigMap, Secret,
HPA, PodDisruptionBudget, NetworkPolicy and Ingress of the namespace (or only
the objects --include names) into Secrets there. A namespace has one session
at a time.`,
		Example: `  tether session start incident-42 -n shop
  tether session start -n shop --include deploy/orders,cm/orders-config,secret/orders-db`,
		Args: cmdutil.Args(cobra.MaximumNArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringSliceVar(&o.Include, "include", nil, "snapshot only these objects, KIND/NAME,... (default: every object of the kinds above)")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes NAME and resolves the namespace.
func (o *StartOptions) Complete(args []string) error {
	if len(args) == 1 {
		o.Name = args[0]
	}
	return o.complete()
}

// Validate checks the options without I/O.
func (o *StartOptions) Validate() error {
	if err := validateName(o.Name); err != nil {
		return err
	}
	if err := validateInclude(o.Include); err != nil {
		return err
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run asks the daemon to start the session.
func (o *StartOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	info, err := client.SessionStart(ctx, daemon.SessionStartRequest{Namespace: o.Ns, Name: o.Name, Include: o.Include})
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, info)
	}
	fmt.Fprintf(o.Out, "Session %s started in %s at %s: %d objects snapshotted in the cluster (sha256 %.12s).\n",
		info.Name, info.Namespace, info.Since.Local().Format(time.RFC3339), info.Objects, info.Hash)
	fmt.Fprintf(o.Out, "`tether session diff -n %[1]s` shows what changes, `tether session rollback -n %[1]s` puts it back, "+
		"`tether session end -n %[1]s` keeps the changes.\n", info.Namespace)
	return nil
}
