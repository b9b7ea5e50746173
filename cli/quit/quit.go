// Package quit implements `tether quit`.
package quit

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
)

// QuitOptions are the flags and dependencies of `tether quit`.
type QuitOptions struct {
	genericiooptions.IOStreams

	Output string

	// DaemonService reaches the running daemon; it does not start one.
	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
}

// QuitResult is what -o json|yaml prints.
type QuitResult struct {
	Stopped bool `json:"stopped"`
}

// NewCmdQuit returns the quit command; runF replaces Run in tests.
func NewCmdQuit(f *cmdutil.Factory, runF func(context.Context, *QuitOptions) error) *cobra.Command {
	o := &QuitOptions{IOStreams: f.IOStreams, DaemonService: f.RunningDaemon()}
	cmd := &cobra.Command{
		Use:   "quit",
		Short: "End every intercept and stop the daemon (agents stay and serve the app; `tether rollback` removes them)",
		Long: `Stop the local daemon of the current kube context. Every intercept ends: the
agents send traffic to the app in their pods again. The agents stay in the
pods (` + "`tether rollback`" + ` removes them) and keep recording. With no daemon
running, quit says so and succeeds.`,
		Example: `  tether quit
  tether quit --context staging -o json`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete has nothing to resolve.
func (o *QuitOptions) Complete([]string) error { return nil }

// Validate checks the options without I/O.
func (o *QuitOptions) Validate() error { return cmdutil.ValidateOutput(o.Output) }

// Run stops the daemon, if one runs.
func (o *QuitOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if errors.Is(err, cmdutil.ErrNoDaemon) {
		return o.report(false, "No daemon runs for this context.")
	}
	if err != nil {
		return err
	}
	defer done()
	if err := client.Quit(ctx); err != nil {
		return err
	}
	return o.report(true, "Daemon stopped; intercepts ended.")
}

func (o *QuitOptions) report(stopped bool, text string) error {
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, QuitResult{Stopped: stopped})
	}
	_, err := fmt.Fprintln(o.Out, text)
	return err
}
