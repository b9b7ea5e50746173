// Package replay implements `tether replay`.
package replay

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// ReplayOptions are the flags and dependencies of `tether replay`.
type ReplayOptions struct {
	genericiooptions.IOStreams

	Workload string
	Refs     []string
	From     string
	To       string
	Rate     string
	Speed    string
	Count    int
	Conc     int
	Headers  []string
	Diff     bool
	Ignore   []string
	Timeout  time.Duration
	Output   string
	Filter   requests.FilterFlags // --status, --method, --path, --since, --limit

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Now is the clock --since counts back from.
	Now func() time.Time
	// ReadFile reads the --from file.
	ReadFile func(path string) ([]*recording.Exchange, error)
}

// NewCmdReplay returns the replay command; runF replaces Run in tests.
func NewCmdReplay(f *cmdutil.Factory, runF func(context.Context, *ReplayOptions) error) *cobra.Command {
	o := &ReplayOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
		Now:           time.Now,
		ReadFile:      requests.ReadFile,
	}
	cmd := &cobra.Command{
		Use:   "replay [WORKLOAD [ID...]] --to local[:PORT]|cluster[:HOST:PORT|:recorded]|URL",
		Short: "Send recorded requests again, to your laptop or the cluster, and compare the answers",
		Long: `Replay recorded requests: the ones named by ID (as ` + "`tether requests list`" + ` shows
them), the ones the filter flags select, or the ones in a file (--from, from
` + "`tether requests save`" + ` or any HAR file).

--to local       the local port of WORKLOAD's intercept: the process in your IDE
--to local:PORT  a port on this machine
--to cluster     from inside one of WORKLOAD's pods, to WORKLOAD's own Service
                 (the port that leads to where the request was recorded),
                 with the recorded Host header
--to cluster:HOST:PORT   from inside one of WORKLOAD's pods, to that address
--to cluster:recorded    from inside one of WORKLOAD's pods, to the host each
                 caller addressed (its Host header): only when you trust
                 the recording, since any caller chose that host
--to URL         e.g. http://localhost:3000 or a staging URL

Requests go one at a time unless --concurrency; --rate N/s sends at a fixed
pace, --speed 2x keeps the recorded spacing at twice the speed. Each request
prints its status and latency; the end prints counts by status and latency
percentiles. --diff compares each answer with the recorded one (status,
headers but the volatile ones, JSON bodies field by field) and exits 3 when
anything differs, for scripts and CI.

Redacted headers (Authorization, Cookie, ...) are not replayed unless you
give their value with --header.`,
		Example: `  tether replay orders x2x.17 --to local
  tether replay orders --status 5xx --since 10m --to local:8080 --diff
  tether replay orders --path /orders --to cluster --rate 50/s --count 10
  tether replay --from incident.har --to http://localhost:8080 --header 'Authorization: Bearer dev'`,
		RunE: cmdutil.RunE(o, runF),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.To, "to", "", "where to send: local, local:PORT, cluster, cluster:HOST:PORT, cluster:recorded, or a URL (required)")
	fl.StringVar(&o.From, "from", "", "replay the requests in this file (from `requests save` or a HAR file)")
	fl.StringVar(&o.Rate, "rate", "", "requests per second, e.g. 100/s")
	fl.StringVar(&o.Speed, "speed", "", "keep the recorded spacing, scaled, e.g. 2x")
	fl.IntVar(&o.Count, "count", 1, "send the selection this many times")
	fl.IntVar(&o.Conc, "concurrency", 1, "requests in flight at once")
	fl.StringArrayVar(&o.Headers, "header", nil, `"Name: value" set on every request, e.g. a token for a redacted header (repeatable)`)
	fl.BoolVar(&o.Diff, "diff", false, "compare each answer with the recorded one; exit 3 when any differs")
	fl.StringSliceVar(&o.Ignore, "ignore-header", nil, "headers --diff ignores, besides Date and the like (repeatable)")
	fl.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per request")
	fl.StringVar(&o.Filter.Status, "status", "", "select by status (404) or class (5xx)")
	fl.StringVar(&o.Filter.Method, "method", "", "select by HTTP method")
	fl.StringVar(&o.Filter.Path, "path", "", "select by path prefix")
	fl.DurationVar(&o.Filter.Since, "since", 0, "select the requests of the last DURATION")
	fl.IntVar(&o.Filter.Limit, "limit", 0, "select only the newest N")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and the IDs and resolves the namespace.
func (o *ReplayOptions) Complete(args []string) error {
	if len(args) > 0 {
		o.Workload, o.Refs = args[0], args[1:]
	}
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *ReplayOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if o.To == "" {
		return errdefs.User("--to is required: local, local:PORT, cluster, cluster:HOST:PORT, cluster:recorded, or a URL")
	}
	kind, _, err := daemon.ParseTo(o.To)
	if err != nil {
		return errdefs.Mark(errdefs.ErrUser, err)
	}
	if o.From == "" && o.Workload == "" {
		return errdefs.User("say what to replay: WORKLOAD with IDs or filters, or --from FILE")
	}
	if o.From != "" && len(o.Refs) > 0 {
		return errdefs.User("--from replays the file's requests: give no IDs with it")
	}
	if (strings.HasPrefix(kind, "cluster") || o.To == "local") && o.Workload == "" {
		return errdefs.User("--to %s needs the WORKLOAD", o.To)
	}
	if o.Rate != "" && o.Speed != "" {
		return errdefs.User("--rate and --speed exclude each other: choose one")
	}
	if _, err := ParseRate(o.Rate); err != nil {
		return err
	}
	if _, err := parseSpeed(o.Speed); err != nil {
		return err
	}
	if o.Count < 1 || o.Conc < 1 {
		return errdefs.User("--count and --concurrency must be at least 1")
	}
	for _, h := range o.Headers {
		if k, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(k) == "" {
			return errdefs.User(`--header %q: write "Name: value"`, h)
		}
	}
	for _, r := range o.Refs {
		if _, _, err := requests.ParseRef(r); err != nil {
			return err
		}
	}
	if o.Timeout <= 0 {
		return errdefs.User("--timeout must be positive, e.g. 30s")
	}
	return o.Filter.Validate()
}

// Header is --header's "Name: value" pairs (checked by Validate) as a
// header set on every request.
func (o *ReplayOptions) Header() http.Header {
	hdr := http.Header{}
	for _, h := range o.Headers {
		k, v, _ := strings.Cut(h, ":")
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return hdr
}

// ParseRate reads --rate: "100/s" or "100".
func ParseRate(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || n <= 0 {
		return 0, errdefs.User("--rate %q: write requests per second, e.g. 100/s", s)
	}
	return n, nil
}

func parseSpeed(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
	if err != nil || n <= 0 {
		return 0, errdefs.User("--speed %q: write a factor such as 2x or 0.5x", s)
	}
	return n, nil
}

// Run selects the requests, replays them through the daemon and prints.
func (o *ReplayOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	exs, refs, err := o.Selection(ctx, client)
	if err != nil {
		return err
	}
	if len(exs) == 0 {
		return errdefs.User("nothing to replay: no recorded request matches")
	}
	rate, _ := ParseRate(o.Rate)
	speed, _ := parseSpeed(o.Speed)
	hdr := o.Header()
	sum, err := client.Replay(ctx, daemon.ReplayRequest{Namespace: o.Ns, Workload: o.Workload, Exchanges: exs, Refs: refs, To: o.To,
		Options: replay.Options{Rate: rate, Speed: speed, Concurrency: o.Conc, Count: o.Count, Header: hdr, Diff: o.Diff,
			IgnoreHeaders: o.Ignore, Timeout: o.Timeout}}, func(r replay.Result) error {
		if o.Output != cmdutil.OutputText {
			return cmdutil.PrintItem(o.Out, o.Output, r)
		}
		printResult(o, r)
		return nil
	})
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintItem(o.Out, o.Output, sum); err != nil {
			return err
		}
	} else {
		printSummary(o, sum)
	}
	switch {
	case sum.Errors > 0:
		return fmt.Errorf("%d of %d requests failed", sum.Errors, sum.Errors+sum.Sent)
	case o.Diff && sum.Differing > 0:
		return errdefs.Mark(errdefs.ErrFailedCheck, fmt.Errorf("%d of %d answers differ from the recording", sum.Differing, sum.Sent))
	}
	return nil
}

// Selection returns the exchanges to replay and their names: the file's, the
// named ones, or those the filter selects.
func (o *ReplayOptions) Selection(ctx context.Context, client daemon.Service) ([]*recording.Exchange, []string, error) {
	if o.From != "" {
		exs, err := o.ReadFile(o.From)
		if err != nil {
			return nil, nil, err
		}
		var refs []string
		for _, e := range exs {
			refs = append(refs, requests.Ref(e))
		}
		return exs, refs, nil
	}
	f, err := o.Filter.Filter(o.Now())
	if err != nil {
		return nil, nil, err
	}
	for _, r := range o.Refs {
		_, id, err := requests.ParseRef(r)
		if err != nil {
			return nil, nil, err
		}
		f.IDs = append(f.IDs, id)
	}
	got, _, err := requests.Read(ctx, client, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload, Filter: f, Limit: o.Filter.Limit}, o.ErrOut)
	if err != nil {
		return nil, nil, err
	}
	if len(o.Refs) == 0 {
		// Selected by filter: the replays of earlier runs, recorded
		// too, are not part of the failure.
		got = slices.DeleteFunc(got, replay.IsReplay)
	}
	if len(o.Refs) > 0 {
		var picked []*recording.Exchange
		for _, r := range o.Refs {
			e, err := requests.Find(r, got)
			if err != nil {
				return nil, nil, err
			}
			picked = append(picked, e)
		}
		got = picked
	}
	var refs []string
	for _, e := range got {
		refs = append(refs, requests.Ref(e))
	}
	return got, refs, nil
}

// printResult prints one result for people; recorded and received text is
// escaped (recording.Printable).
func printResult(o *ReplayOptions, r replay.Result) {
	p := recording.Printable
	round := ""
	if o.Count > 1 {
		round = fmt.Sprintf(" #%d", r.Round)
	}
	head := p(r.Ref) + round + "  " + p(r.Method) + " " + p(r.Target)
	switch {
	case r.Skipped != "":
		fmt.Fprintf(o.Out, "%s  skipped: %s\n", head, p(r.Skipped))
	case r.Error != "":
		fmt.Fprintf(o.Out, "%s  ERROR %s\n", head, p(r.Error))
	case r.GRPCStatus != "":
		fmt.Fprintf(o.Out, "%s  %d grpc-status %s  %s\n", head, r.Status, p(r.GRPCStatus), r.Latency.Round(10*time.Microsecond))
	default:
		fmt.Fprintf(o.Out, "%s  %d  %s\n", head, r.Status, r.Latency.Round(10*time.Microsecond))
	}
	if d := r.Diff; d != nil {
		if d.Empty() {
			fmt.Fprintln(o.Out, "    same as recorded")
		}
		if d.Status != "" {
			fmt.Fprintf(o.Out, "    status %s\n", p(d.Status))
		}
		for _, h := range d.Headers {
			fmt.Fprintf(o.Out, "    header %s\n", p(h))
		}
		for _, tr := range d.Trailers {
			fmt.Fprintf(o.Out, "    trailer %s\n", p(tr))
		}
		for _, b := range d.Body {
			fmt.Fprintf(o.Out, "    body %s\n", p(b))
		}
		for _, n := range d.NotCompared {
			fmt.Fprintf(o.Out, "    not compared: %s\n", p(n))
		}
	}
}

func printSummary(o *ReplayOptions, s replay.Summary) {
	var parts []string
	var keys []string
	for k := range s.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d x %s", s.ByStatus[k], k))
	}
	fmt.Fprintf(o.Out, "\n%d sent (%s)", s.Sent, strings.Join(parts, ", "))
	if s.Skipped > 0 {
		fmt.Fprintf(o.Out, ", %d skipped", s.Skipped)
	}
	fmt.Fprintf(o.Out, " in %s, %.0f/s; latency p50 %s, p90 %s, p99 %s, max %s\n", s.Elapsed.Round(time.Millisecond), s.PerSecond,
		s.P50.Round(10*time.Microsecond), s.P90.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Max.Round(10*time.Microsecond))
	if o.Diff {
		fmt.Fprintf(o.Out, "%d of %d answers differ from the recording\n", s.Differing, s.Sent)
	}
}
