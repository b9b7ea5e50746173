package requests

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// StatsOptions are the flags and dependencies of `tether requests stats`.
type StatsOptions struct {
	WorkloadOptions
}

// NewCmdStats returns `requests stats`; runF replaces Run in tests.
func NewCmdStats(f *cmdutil.Factory, runF func(context.Context, *StatsOptions) error) *cobra.Command {
	o := &StatsOptions{WorkloadOptions: newWorkloadOptions(f)}
	cmd := &cobra.Command{
		Use:   "stats WORKLOAD",
		Short: "Show each agent's recorder: exchanges held and evicted, memory used of the budget, traffic let through unrecorded, redaction",
		Long: `Show, per pod of WORKLOAD, what its agent's recorder holds: exchanges held,
recorded and evicted (the oldest go when the budget is full), memory used of
the budget, connections it let through without recording (not HTTP, or
upgraded to another protocol), and which names it redacts.`,
		Example: `  tether requests stats deploy/orders
  tether requests stats orders -o yaml`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and resolves the namespace.
func (o *StatsOptions) Complete(args []string) error { return o.complete(args[0]) }

// Validate checks the options without I/O.
func (o *StatsOptions) Validate() error { return o.validate() }

// Run reads the recorders' statistics and prints them.
func (o *StatsOptions) Run(ctx context.Context) error {
	_, pods, err := o.read(ctx, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload,
		Filter: recording.Filter{IDs: []uint64{0}}}) // no exchange has id 0: statistics only
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, pods)
	}
	tw := tabwriter.NewWriter(o.Out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tHELD\tRECORDED\tEVICTED\tMEMORY\tNOT HTTP\tLIMITED\tUPGRADED\tREDACTION")
	for _, p := range pods {
		if p.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\n", p.Pod, p.Error)
			continue
		}
		s := p.Stats
		redaction := "on: " + strings.Join(s.RedactedNames, ", ") + " + look-alike names"
		if s.RedactionOff {
			redaction = "OFF (--no-redact)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s of %s\t%d\t%d\t%d\t%s\n", p.Pod, s.Held, s.Exchanges, s.Evicted,
			humanBytes(int64(s.StoredBytes+s.InflightBytes)), humanBytes(int64(s.BudgetBytes)), s.NotHTTP+s.Malformed, s.Limited, s.Upgraded, redaction)
	}
	return tw.Flush()
}
