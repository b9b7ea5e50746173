// Package status implements `tether status`.
package status

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
)

// Report is what status prints; -o json|yaml prints it as is.
type Report struct {
	Connected bool           `json:"connected"`
	Daemon    *daemon.Status `json:"daemon,omitempty"`
}

// NewCmdStatus returns the status command.
func NewCmdStatus(f *cmdutil.Factory) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's connection and the running intercepts",
		Example: `  tether status
  tether status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmdutil.ValidateOutput(output); err != nil {
				return err
			}
			return run(cmd.Context(), f, output)
		},
	}
	cmdutil.AddOutputFlag(cmd, &output)
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, output string) error {
	var rep Report
	client, done, err := f.Daemon(ctx, false)
	switch {
	case errors.Is(err, cmdutil.ErrNoDaemon):
	case err != nil:
		return err
	default:
		defer done()
		st, err := client.Status(ctx)
		if err != nil {
			return err
		}
		rep = Report{Connected: true, Daemon: &st}
	}
	if output != cmdutil.OutputText {
		return cmdutil.PrintStructured(f.IOStreams.Out, output, rep)
	}
	out := f.IOStreams.Out
	if !rep.Connected {
		fmt.Fprintln(out, "Not connected: no daemon runs for this context. `tether connect` or `tether intercept` starts one.")
		return nil
	}
	st := rep.Daemon
	fmt.Fprintf(out, "Connected to context %s (%s, Kubernetes %s); daemon %s, pid %d\n", st.Context, st.Server, st.ServerVersion, st.DaemonVersion, st.PID)
	if len(st.Intercepts) == 0 {
		fmt.Fprintln(out, "No intercepts.")
	} else {
		fmt.Fprintln(out, "Intercepts:")
		for _, i := range st.Intercepts {
			fmt.Fprintf(out, "  %s in %s: service %s port %d -> localhost:%d (agent port %d; pods: %s)\n",
				i.Name, i.Namespace, i.Service, i.ServicePort, i.LocalPort, i.AgentPort, strings.Join(i.Pods, ", "))
		}
	}
	if len(st.Agents) > 0 {
		fmt.Fprintln(out, "Agents (`tether rollback WORKLOAD` removes one):")
		for _, a := range st.Agents {
			rec := "recording, redacting " + strings.Join(a.Redacted, ", ")
			switch {
			case !a.Recording:
				rec = "not recording"
			case a.RedactionOff:
				rec = "recording with redaction OFF (--no-redact): secrets are kept as seen"
			}
			fmt.Fprintf(out, "  %s in %s: %s\n", a.Workload, a.Namespace, rec)
		}
	}
	return nil
}
