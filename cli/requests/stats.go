package requests

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

func newCmdStats(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stats WORKLOAD",
		Short: "Show each agent's recorder: exchanges held and evicted, memory used of the budget, traffic let through unrecorded, redaction",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			_, pods, err := o.read(cmd.Context(), daemon.RequestsRequest{Namespace: o.Namespace, Workload: o.Workload,
				Filter: recording.Filter{IDs: []uint64{0}}}) // no exchange has id 0: statistics only
			if err != nil {
				return err
			}
			if o.Output != cmdutil.OutputText {
				return cmdutil.PrintStructured(o.Out, o.Output, pods)
			}
			tw := tabwriter.NewWriter(o.Out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POD\tHELD\tRECORDED\tEVICTED\tMEMORY\tNOT HTTP\tUPGRADED\tREDACTION")
			for _, p := range pods {
				if p.Error != "" {
					fmt.Fprintf(tw, "%s\t%s\n", p.Pod, p.Error)
					continue
				}
				s := p.Stats
				redaction := "on: " + strings.Join(s.RedactedNames, ", ")
				if s.RedactionOff {
					redaction = "OFF (--no-redact)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s of %s\t%d\t%d\t%s\n", p.Pod, s.Held, s.Exchanges, s.Evicted,
					humanBytes(int64(s.StoredBytes+s.InflightBytes)), humanBytes(int64(s.BudgetBytes)), s.NotHTTP+s.Malformed, s.Upgraded, redaction)
			}
			return tw.Flush()
		},
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}
