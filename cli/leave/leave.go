// Package leave implements `tether leave`.
package leave

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// LeaveOptions are the flags and dependencies of `tether leave`.
type LeaveOptions struct {
	genericiooptions.IOStreams

	Workload string
	Output   string

	// Ns is the namespace Complete resolved.
	Ns string

	// DaemonService reaches the running daemon; it does not start one.
	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

// NewCmdLeave returns the leave command; runF replaces Run in tests.
func NewCmdLeave(f *cmdutil.Factory, runF func(context.Context, *LeaveOptions) error) *cobra.Command {
	o := &LeaveOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.RunningDaemon(),
		Namespace:     f.Namespace(),
	}
	cmd := &cobra.Command{
		Use:   "leave WORKLOAD",
		Short: "Stop an intercept: the workload's traffic goes to its own pods again",
		Long: `Stop intercepting WORKLOAD: connections to its Service port go to the app in
its pods again, and no longer to this machine. The agent stays in the pods
and passes traffic to the app, so leaving restarts nothing;
` + "`tether rollback`" + ` removes the agent. WORKLOAD is named as in ` + "`tether intercept`" + `.`,
		Example: `  tether leave deploy/orders
  tether leave orders -n shop -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and resolves the namespace.
func (o *LeaveOptions) Complete(args []string) error {
	o.Workload = args[0]
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *LeaveOptions) Validate() error {
	if strings.TrimSpace(o.Workload) == "" {
		return errdefs.User("name the intercepted workload: tether leave WORKLOAD (`tether status` lists the intercepts)")
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run asks the daemon to end the intercept.
func (o *LeaveOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if errors.Is(err, cmdutil.ErrNoDaemon) {
		return errdefs.Mark(errdefs.ErrUser, fmt.Errorf("%s is not intercepted: %w", o.Workload, err))
	}
	if err != nil {
		return err
	}
	defer done()
	if err := client.Leave(ctx, o.Ns, o.Workload); err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, map[string]string{"left": o.Workload, "namespace": o.Ns})
	}
	fmt.Fprintf(o.Out, "Left %s: its traffic goes to its own pods again.\n", o.Workload)
	return nil
}
