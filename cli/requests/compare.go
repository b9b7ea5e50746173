package requests

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// CompareOptions are the flags and dependencies of `tether requests compare`.
type CompareOptions struct {
	WorkloadOptions
	FilterFlags

	Ignore []string
	// Now is the clock --since counts back from.
	Now func() time.Time
}

// NewCmdCompare returns `requests compare`; runF replaces Run in tests.
func NewCmdCompare(f *cmdutil.Factory, runF func(context.Context, *CompareOptions) error) *cobra.Command {
	o := &CompareOptions{WorkloadOptions: newWorkloadOptions(f), Now: time.Now}
	cmd := &cobra.Command{
		Use:   "compare WORKLOAD",
		Short: "Compare your laptop's answers to a mirror's copies with the app's answers to the same requests",
		Long: `A mirror intercept (` + "`tether intercept WORKLOAD --port P --mirror`" + `) sends your
process a copy of each request the app answers; the agents record both
answers. compare pairs each copy with the app's exchange of the same request
(same pod, method, target, host and body, recorded before the copy) and
shows how your answer differs: status, headers (Date and the like aside),
JSON fields by path, gRPC status and messages. So a change on your laptop is
checked against live traffic without any caller seeing its answers.

The flags select the app's requests (--status is the app's answer's
status); --limit keeps the newest N pairs. Exits 3 when any answer differs,
for scripts and CI. A copy whose app exchange is no longer held (evicted
to stay within the budget) is counted apart.`,
		Example: `  tether intercept orders --port http --mirror
  tether requests compare orders
  tether requests compare orders --path /orders --since 10m --ignore-header X-Request-Id
  tether requests compare orders -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	AddFilterFlags(cmd, &o.FilterFlags)
	cmd.Flags().StringSliceVar(&o.Ignore, "ignore-header", nil, "headers to leave out of the comparison, besides Date and the like (repeatable)")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and resolves the namespace.
func (o *CompareOptions) Complete(args []string) error { return o.complete(args[0]) }

// Validate checks the options without I/O.
func (o *CompareOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	return o.FilterFlags.Validate()
}

// compared is one pair of `requests compare -o json`.
type compared struct {
	App          string       `json:"app"`
	Mirror       string       `json:"mirror"`
	Time         time.Time    `json:"time"`
	Method       string       `json:"method"`
	Path         string       `json:"path"`
	AppStatus    int          `json:"appStatus"`
	LaptopStatus int          `json:"laptopStatus"`
	Differs      bool         `json:"differs"`
	Diff         *replay.Diff `json:"diff,omitempty"`
}

// comparison is the whole of `requests compare -o json`.
type comparison struct {
	Pairs []compared `json:"pairs"`
	// Same, Differing and NotCompared count the pairs; Unpaired the
	// copies whose app exchange is no longer held.
	Same        int      `json:"same"`
	Differing   int      `json:"differing"`
	NotCompared int      `json:"notCompared"`
	Unpaired    []string `json:"unpaired,omitempty"`
}

// Run reads the recorded exchanges, pairs the copies and compares.
func (o *CompareOptions) Run(ctx context.Context) error {
	f, err := o.Filter(o.Now())
	if err != nil {
		return err
	}
	status := f.Status
	f.Status = "" // the copies are read whatever the laptop answered
	exchanges, _, err := o.read(ctx, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload, Filter: f})
	if err != nil {
		return err
	}
	pairs, unpaired := replay.PairMirrors(exchanges, o.Ignore)
	appStatus := recording.Filter{Status: status}
	var out comparison
	for _, p := range pairs {
		if !appStatus.Match(p.App) {
			continue
		}
		out.Pairs = append(out.Pairs, compared{App: Ref(p.App), Mirror: Ref(p.Mirror), Time: p.App.Time,
			Method: p.App.Request.Method, Path: p.App.Request.Target, AppStatus: p.App.Status(),
			LaptopStatus: p.Mirror.Status(), Differs: !p.Diff.Empty(), Diff: p.Diff})
	}
	if o.Limit > 0 && len(out.Pairs) > o.Limit {
		out.Pairs = out.Pairs[len(out.Pairs)-o.Limit:]
	}
	for _, p := range out.Pairs {
		switch {
		case p.Differs:
			out.Differing++
		case len(p.Diff.NotCompared) > 0:
			out.NotCompared++
		default:
			out.Same++
		}
	}
	for _, e := range unpaired {
		out.Unpaired = append(out.Unpaired, Ref(e))
	}
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, out); err != nil {
			return err
		}
	} else if err := o.print(out); err != nil {
		return err
	}
	switch {
	case out.Differing > 0:
		return errdefs.Mark(errdefs.ErrFailedCheck, fmt.Errorf("%d of %d answers from your laptop differ from the app's", out.Differing, len(out.Pairs)))
	case len(out.Pairs) == 0 && len(unpaired) == 0:
		return errdefs.NotFound("no mirrored copies recorded for %s: start a mirror with `tether intercept %s --port PORT --mirror` and let requests come in", o.Workload, o.Workload)
	}
	return nil
}

func (o *CompareOptions) print(out comparison) error {
	tw := tabwriter.NewWriter(o.Out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tCOPY\tMETHOD\tPATH\tAPP\tLAPTOP\tDIFFERENCE")
	for _, p := range out.Pairs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.App, p.Mirror, recording.Printable(p.Method),
			short(recording.Printable(p.Path), 50), statusText(p.AppStatus), statusText(p.LaptopStatus), differences(p.Diff))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "%d compared: %d the same, %d differ, %d not compared", len(out.Pairs), out.Same, out.Differing, out.NotCompared)
	if n := len(out.Unpaired); n > 0 {
		fmt.Fprintf(o.Out, "; %d copies without the app's exchange (evicted)", n)
	}
	fmt.Fprintln(o.Out)
	return nil
}

func statusText(s int) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

// differences is a Diff in one line.
func differences(d *replay.Diff) string {
	if d.Empty() {
		if len(d.NotCompared) > 0 {
			return "not compared: " + strings.Join(d.NotCompared, "; ")
		}
		return "same"
	}
	var parts []string
	if d.Status != "" {
		parts = append(parts, "status "+d.Status)
	}
	parts = append(parts, d.Headers...)
	parts = append(parts, d.Body...)
	parts = append(parts, d.Trailers...)
	return recording.Printable(short(strings.Join(parts, "; "), 120))
}
