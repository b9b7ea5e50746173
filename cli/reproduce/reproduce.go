// Package reproduce implements `tether reproduce`: replay a failing set of
// requests N times and count how often the failure recurs.
package reproduce

import (
	"context"
	"fmt"
	"net/http"
	"sort"
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

// ReproduceOptions are the flags and dependencies of `tether reproduce`.
type ReproduceOptions struct {
	genericiooptions.IOStreams

	Workload string
	Refs     []string
	From     string
	To       string
	Count    int
	Expect   []string
	Headers  []string
	Timeout  time.Duration
	Output   string
	Filter   requests.FilterFlags

	// Ns is the namespace Complete resolved; expects the parsed --expect.
	Ns      string
	expects []replay.Expect

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	Now           func() time.Time
	ReadFile      func(path string) ([]*recording.Exchange, error)
}

// NewCmdReproduce returns the reproduce command; runF replaces Run in tests.
func NewCmdReproduce(f *cmdutil.Factory, runF func(context.Context, *ReproduceOptions) error) *cobra.Command {
	o := &ReproduceOptions{IOStreams: f.IOStreams, DaemonService: f.DaemonService(), Namespace: f.Namespace(), Now: time.Now, ReadFile: requests.ReadFile}
	cmd := &cobra.Command{
		Use:   "reproduce [WORKLOAD [ID...]] --to local[:PORT]|cluster|URL --expect COND",
		Short: "Replay failing requests N times and count how often the failure recurs",
		Long: `Send a set of requests --count times (10 by default) and count the rounds in
which the failure recurs, so "does my change fix it" is one command with a
count. The requests are chosen as 'tether replay' chooses them: IDs or filter
flags on WORKLOAD's recording, or a file (--from, from 'tether requests save'
or a HAR file); --to says where they go, as for replay.

--expect describes the failure; an answer reproduces it when it meets every
--expect (repeatable):
  status=500  status=5xx  status!=200       the answer's status
  latency>500ms  latency>=2s                how long the answer took
  json:.error=out of stock  json:.items[0].state!=ok  json:.error
                                            a JSON path of the answer's body
  error                                     no answer at all

A round reproduces the failure when one of its answers does. The exit code
says whether it recurred: 3 when it did in any round, 0 when it never did
(fixed), like a test.`,
		Example: `  tether reproduce orders --status 5xx --since 10m --to cluster --expect status=5xx
  tether reproduce --from failing.json --to local:8080 --count 20 --expect 'json:.error=out of stock'
  tether reproduce orders x2x.17 --to cluster --expect 'latency>500ms' -o json`,
		RunE: cmdutil.RunE(o, runF),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.To, "to", "", "where to send: local, local:PORT, cluster, cluster:HOST:PORT, cluster:recorded, or a URL (required)")
	fl.StringVar(&o.From, "from", "", "the requests in this file (from `requests save` or a HAR file)")
	fl.IntVar(&o.Count, "count", 10, "rounds: how many times to send the requests")
	fl.StringArrayVar(&o.Expect, "expect", nil, "a condition the failing answer meets (repeatable; all must hold)")
	fl.StringArrayVar(&o.Headers, "header", nil, `"Name: value" set on every request, e.g. a token for a redacted header (repeatable)`)
	fl.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per request")
	fl.StringVar(&o.Filter.Status, "status", "", "select recorded requests by status (404) or class (5xx)")
	fl.StringVar(&o.Filter.Method, "method", "", "select by HTTP method")
	fl.StringVar(&o.Filter.Path, "path", "", "select by path prefix")
	fl.DurationVar(&o.Filter.Since, "since", 0, "select the requests of the last DURATION")
	fl.IntVar(&o.Filter.Limit, "limit", 0, "select only the newest N")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and the IDs and resolves the namespace.
func (o *ReproduceOptions) Complete(args []string) error {
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
func (o *ReproduceOptions) Validate() error {
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
		return errdefs.User("say what to send: WORKLOAD with IDs or filters, or --from FILE")
	}
	if o.From != "" && len(o.Refs) > 0 {
		return errdefs.User("--from sends the file's requests: give no IDs with it")
	}
	if (strings.HasPrefix(kind, "cluster") || o.To == "local") && o.Workload == "" {
		return errdefs.User("--to %s needs the WORKLOAD", o.To)
	}
	if len(o.Expect) == 0 {
		return errdefs.User("say what the failure looks like: --expect status=500, --expect 'latency>500ms' or --expect 'json:.error=VALUE'")
	}
	o.expects = nil
	for _, s := range o.Expect {
		e, err := replay.ParseExpect(s)
		if err != nil {
			return errdefs.Mark(errdefs.ErrUser, err)
		}
		o.expects = append(o.expects, e)
	}
	if o.Count < 1 {
		return errdefs.User("--count must be at least 1")
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

// Report is what a reproduction found.
type Report struct {
	Expect []string `json:"expect"`
	// Rounds were sent; Reproduced of them had an answer that met every
	// --expect.
	Rounds     int             `json:"rounds"`
	Reproduced int             `json:"reproduced"`
	Requests   []RequestReport `json:"requests"`
	Summary    replay.Summary  `json:"summary"`
}

// RequestReport is one request's answers over the rounds.
type RequestReport struct {
	Ref        string         `json:"ref"`
	Method     string         `json:"method"`
	Target     string         `json:"target"`
	Sent       int            `json:"sent"`
	Reproduced int            `json:"reproduced"`
	ByStatus   map[string]int `json:"byStatus"`
}

// Run sends the requests Count times through the daemon and counts.
func (o *ReproduceOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	exs, refs, err := requests.Select(ctx, client, requests.Selection{From: o.From, ReadFile: o.ReadFile, Ns: o.Ns, Workload: o.Workload,
		Refs: o.Refs, Filter: o.Filter, Now: o.Now(), ErrOut: o.ErrOut})
	if err != nil {
		return err
	}
	if len(exs) == 0 {
		return errdefs.User("nothing to send: no recorded request matches")
	}
	hdr := http.Header{}
	for _, h := range o.Headers {
		k, v, _ := strings.Cut(h, ":")
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	keepBody := false
	for _, e := range o.Expect {
		keepBody = keepBody || strings.HasPrefix(e, "json:")
	}
	rep := Report{Expect: o.Expect, Rounds: o.Count, Requests: []RequestReport{}}
	idx := map[string]int{} // by ref, in rep.Requests
	reproduced := map[int]bool{}
	sum, err := client.Replay(ctx, daemon.ReplayRequest{Namespace: o.Ns, Workload: o.Workload, Exchanges: exs, Refs: refs, To: o.To,
		Options: replay.Options{Count: o.Count, Concurrency: 1, Header: hdr, Timeout: o.Timeout, KeepBody: keepBody}},
		func(r replay.Result) error {
			i, ok := idx[r.Ref]
			if !ok {
				i = len(rep.Requests)
				idx[r.Ref] = i
				rep.Requests = append(rep.Requests, RequestReport{Ref: r.Ref, Method: r.Method, Target: r.Target, ByStatus: map[string]int{}})
			}
			rr := &rep.Requests[i]
			rr.Sent++
			rr.ByStatus[outcome(r)]++
			if replay.MatchAll(o.expects, r) {
				rr.Reproduced++
				reproduced[r.Round] = true
			}
			return nil
		})
	if err != nil {
		return err
	}
	rep.Summary, rep.Reproduced = sum, len(reproduced)
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, rep); err != nil {
			return err
		}
	} else {
		print(o, rep)
	}
	if rep.Reproduced > 0 {
		return errdefs.FailedCheck("the failure recurred in %d of %d rounds", rep.Reproduced, rep.Rounds)
	}
	return nil
}

// outcome names an answer for the counts: its status, "error" or "skipped".
func outcome(r replay.Result) string {
	switch {
	case r.Skipped != "":
		return "skipped"
	case r.Error != "":
		return "error"
	}
	return fmt.Sprint(r.Status)
}

func print(o *ReproduceOptions, rep Report) {
	p := recording.Printable
	for _, r := range rep.Requests {
		var keys []string
		for k := range r.ByStatus {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%d x %s", r.ByStatus[k], k))
		}
		fmt.Fprintf(o.Out, "%s  %s %s  reproduced %d/%d  (%s)\n", p(r.Ref), p(r.Method), p(r.Target), r.Reproduced, r.Sent, strings.Join(parts, ", "))
	}
	verdict := "the failure did not recur"
	if rep.Reproduced > 0 {
		verdict = "the failure recurred"
	}
	fmt.Fprintf(o.Out, "\n%s in %d of %d rounds (%.0f%%): expect %s; latency p50 %s, p99 %s\n", verdict, rep.Reproduced, rep.Rounds,
		100*float64(rep.Reproduced)/float64(rep.Rounds), strings.Join(rep.Expect, " and "),
		rep.Summary.P50.Round(10*time.Microsecond), rep.Summary.P99.Round(10*time.Microsecond))
}
