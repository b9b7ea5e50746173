// Package trace implements `tether trace`.
package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// TraceOptions are the flags and dependencies of `tether trace`.
type TraceOptions struct {
	genericiooptions.IOStreams

	From, To, AgentImage, Output string

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

// NewCmdTrace returns the trace command; runF replaces Run in tests.
func NewCmdTrace(f *cmdutil.Factory, runF func(context.Context, *TraceOptions) error) *cobra.Command {
	o := &TraceOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
	}
	cmd := &cobra.Command{
		Use:   "trace FROM TO",
		Short: "Explain where a connection from a pod goes, and where it breaks",
		Long: `Trace the path of a connection from a pod, step by step:

  dns      the pod's resolv.conf, and every query its resolver sends for the
           name, sent from the pod itself, with answers and latencies
  service  the Service's port -> targetPort -> container port, its selector,
           and its endpoints, ready or not and why (failing probe, terminating)
  policy   the NetworkPolicies that select the source (egress) and the
           destination (ingress), and the rule that allows or the absence
           that denies, computed from the policy objects
  probe    TCP connections from the pod to the Service address and to each
           endpoint, and an HTTP request where the destination speaks HTTP

The last line names the first broken step, or says the path is healthy.

FROM is a pod (pod/NAME or NAME), or deploy/NAME or sts/NAME, which picks a
ready pod and says which. TO is a DNS name, svc/NAME[:PORT] (NAME.NAMESPACE
for another namespace), pod/NAME:PORT, host:port, or an http:// URL.

tether adds its agent to the source pod as an ephemeral container with no
capabilities, running as non-root: the pod is not restarted, and the
container stays listed on the pod after use. Nothing is changed otherwise.

Exit status: 0 when the path is healthy, 3 when a step is broken, 2 for bad
input, 1 when the trace itself could not run.`,
		Example: `  tether trace deploy/frontend svc/orders
  tether trace frontend-7d9c-x2x orders.shop:80
  tether trace pod/frontend-7d9c-x2x http://orders/healthz -o json
  tether trace deploy/frontend pod/orders-5f6b-abcde:8080`,
		Args: cmdutil.Args(cobra.ExactArgs(2)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes FROM and TO and resolves the namespace.
func (o *TraceOptions) Complete(args []string) error {
	o.From, o.To = args[0], args[1]
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *TraceOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if strings.TrimSpace(o.From) == "" || strings.TrimSpace(o.To) == "" {
		return errdefs.User("FROM and TO must not be empty: tether trace FROM TO (see --help)")
	}
	return nil
}

// Run traces and prints the report.
func (o *TraceOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := client.Trace(ctx, daemon.TraceRequest{Namespace: o.Ns, From: o.From, To: o.To, AgentImage: o.AgentImage},
		func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, rep); err != nil {
			return err
		}
	} else {
		Print(o.Out, rep)
	}
	if rep.FirstBroken != "" {
		return errdefs.Mark(errdefs.ErrFailedCheck, errors.New(rep.Conclusion))
	}
	return nil
}

// Print writes the report for people.
func Print(w io.Writer, rep daemon.TraceReport) {
	fmt.Fprintf(w, "trace from pod %s/%s to %s\n\n", rep.Source.Namespace, rep.Source.Pod, rep.Target.Input)
	for _, st := range rep.Steps {
		fmt.Fprintf(w, "  %-7s %-8s %s\n", statusWord(st.Status), st.Name, st.Summary)
		for _, d := range st.Details {
			fmt.Fprintf(w, "  %-7s %-8s   %s\n", "", "", d)
		}
	}
	took := time.Duration(rep.DurationMillis * float64(time.Millisecond)).Round(time.Millisecond)
	fmt.Fprintf(w, "\n%s (traced in %s)\n", rep.Conclusion, took)
}

func statusWord(s daemon.TraceStatus) string {
	switch s {
	case daemon.TraceBroken:
		return "BROKEN"
	case daemon.TraceSkipped:
		return "skip"
	}
	return string(s)
}
