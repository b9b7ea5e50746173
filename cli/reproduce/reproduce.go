// Package reproduce implements `tether reproduce`: send a failing request
// set again N times and count how often the failure recurs.
package reproduce

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	replaycmd "github.com/tetherkube/tether/cli/replay"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// ReproduceOptions are the flags and dependencies of `tether reproduce`:
// replay's selection and destination, and the failure to look for.
type ReproduceOptions struct {
	replaycmd.ReplayOptions
	Expect []string

	expect []replay.Expect // Expect, parsed by Validate
}

// NewCmdReproduce returns the reproduce command; runF replaces Run in tests.
func NewCmdReproduce(f *cmdutil.Factory, runF func(context.Context, *ReproduceOptions) error) *cobra.Command {
	o := &ReproduceOptions{ReplayOptions: replaycmd.ReplayOptions{
		IOStreams: f.IOStreams, DaemonService: f.DaemonService(), Namespace: f.Namespace(), Now: time.Now, ReadFile: requests.ReadFile,
	}}
	cmd := &cobra.Command{
		Use:   "reproduce [WORKLOAD [ID...]] --to local[:PORT]|cluster[:HOST:PORT]|URL [--expect COND]... [--count N]",
		Short: "Send failing requests again N times and count how often the failure recurs",
		Long: `Reproduce a failure on demand: send a set of recorded requests (named by ID,
selected by the filter flags, or from a file: ` + "`tether requests save`" + ` or a HAR)
--count times to the cluster or your laptop, and count how often the failure
comes back. "Does my change fix it" becomes one command with a number.

The failure is what --expect describes; every condition must hold for an
answer to count as the failure recurring:

  status=500  status=5xx  status!=200     the answer's status
  grpc-status=13  grpc-status!=0          a gRPC answer's status
  latency>500ms  latency>=1s  latency<50ms
  json:$.error                            the JSON answer has this field
  json:$.total=44.5  json:$.sku!="A1"     ... with (or without) this value
  body~REGEX                              the body matches
  error                                   no answer: refused, reset, timed out

Without --expect, each request's recorded answer is its failure: the same
status (and grpc-status), or no answer when none was recorded.

The end prints, per request and in all, how many answers showed the failure.
Exits 3 when it recurred at least once, 0 when it never did: in CI, after a
fix, exit 0 means fixed. --to works as for ` + "`tether replay`" + `.`,
		Example: `  # the checkouts that failed in the last 10 minutes, 10 times each, against the cluster
  tether reproduce orders --status 5xx --since 10m --to cluster --count 10

  # the same saved incident against the fix running in your IDE
  tether requests save orders incident-42.json --status 5xx
  tether reproduce --from incident-42.json --to local:8080 --expect status=500 --count 20

  # a slow endpoint: does it still take more than 500 ms?
  tether reproduce orders x2x.17 --to cluster --expect 'latency>500ms' --count 50`,
		RunE: cmdutil.RunE(o, runF),
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Expect, "expect", nil, "a condition the failing answer meets (repeatable, all must hold): status=500, latency>500ms, json:$.error, ...")
	fl.StringVar(&o.To, "to", "", "where to send: local, local:PORT, cluster, cluster:HOST:PORT, cluster:recorded, or a URL (required)")
	fl.StringVar(&o.From, "from", "", "the requests in this file (from `requests save` or a HAR file)")
	fl.IntVar(&o.Count, "count", 10, "send the set this many times")
	fl.IntVar(&o.Conc, "concurrency", 1, "requests in flight at once")
	fl.StringVar(&o.Rate, "rate", "", "requests per second, e.g. 100/s")
	fl.StringArrayVar(&o.Headers, "header", nil, `"Name: value" set on every request, e.g. a token for a redacted header (repeatable)`)
	fl.DurationVar(&o.Timeout, "timeout", 30*time.Second, "per request")
	fl.StringVar(&o.Filter.Status, "status", "", "select by recorded status (404) or class (5xx)")
	fl.StringVar(&o.Filter.Method, "method", "", "select by HTTP method")
	fl.StringVar(&o.Filter.Path, "path", "", "select by path prefix")
	fl.DurationVar(&o.Filter.Since, "since", 0, "select the requests of the last DURATION")
	fl.IntVar(&o.Filter.Limit, "limit", 0, "select only the newest N")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Validate checks the options without I/O.
func (o *ReproduceOptions) Validate() error {
	if err := o.ReplayOptions.Validate(); err != nil {
		return err
	}
	o.expect = nil
	for _, x := range o.Expect {
		e, err := replay.ParseExpect(x)
		if err != nil {
			return errdefs.User("--expect: %v", strings.TrimPrefix(err.Error(), replay.ErrBadExpect.Error()+" "))
		}
		o.expect = append(o.expect, e)
	}
	return nil
}

// Tally is how often the failure came back: per request, and in all.
type Tally struct {
	Requests []RequestTally `json:"requests"`
	// Recurred of Answers (sent, or failed to answer) showed the failure.
	Recurred int `json:"recurred"`
	Answers  int `json:"answers"`
	Skipped  int `json:"skipped"`
	// Expect is the failure looked for; empty: each recorded answer.
	Expect  []string       `json:"expect,omitempty"`
	Summary replay.Summary `json:"summary"`
}

// RequestTally is one request's count.
type RequestTally struct {
	Ref      string `json:"ref"`
	Method   string `json:"method"`
	Target   string `json:"target"`
	Recurred int    `json:"recurred"`
	Answers  int    `json:"answers"`
	// Seen counts the answers by status ("500", "error").
	Seen map[string]int `json:"seen"`
}

// Run selects the requests, replays them --count times through the daemon
// and counts.
func (o *ReproduceOptions) Run(ctx context.Context) error {
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
		return errdefs.User("nothing to reproduce: no recorded request matches")
	}
	hdr := o.Header()
	rate, _ := replaycmd.ParseRate(o.Rate)
	tally := Tally{Expect: o.Expect}
	byRef := map[string]*RequestTally{}
	if o.Output == cmdutil.OutputText {
		fmt.Fprintf(o.ErrOut, "sending %d request(s) %d times to %s\n", len(exs), o.Count, o.To)
	}
	sum, err := client.Replay(ctx, daemon.ReplayRequest{Namespace: o.Ns, Workload: o.Workload, Exchanges: exs, Refs: refs, To: o.To,
		Options: replay.Options{Rate: rate, Concurrency: o.Conc, Count: o.Count, Header: hdr, Timeout: o.Timeout,
			Expect: o.expect, ExpectRecorded: len(o.expect) == 0}}, func(r replay.Result) error {
		t := byRef[r.Ref]
		if t == nil {
			t = &RequestTally{Ref: r.Ref, Method: r.Method, Target: r.Target, Seen: map[string]int{}}
			byRef[r.Ref] = t
		}
		switch {
		case r.Skipped != "":
			tally.Skipped++
			return nil
		case r.Error != "":
			t.Seen["error"]++
		default:
			t.Seen[fmt.Sprint(r.Status)]++
		}
		t.Answers++
		if r.Recurred != nil && *r.Recurred {
			t.Recurred++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if t := byRef[ref]; t != nil {
			tally.Requests = append(tally.Requests, *t)
			tally.Recurred += t.Recurred
			tally.Answers += t.Answers
			delete(byRef, ref) // a ref named twice counts once
		}
	}
	tally.Summary = sum
	o.logToSession(ctx, client, tally)
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, tally); err != nil {
			return err
		}
	} else {
		printTally(o, tally)
	}
	switch {
	case tally.Answers == 0:
		return errdefs.User("no request could be sent (%d skipped): `tether replay` with the same selection says why", tally.Skipped)
	case tally.Recurred > 0:
		return errdefs.Mark(errdefs.ErrFailedCheck, fmt.Errorf("the failure recurred in %d of %d answers", tally.Recurred, tally.Answers))
	}
	return nil
}

func printTally(o *ReproduceOptions, t Tally) {
	p := recording.Printable
	what := "the recorded answer"
	if len(t.Expect) > 0 {
		what = strings.Join(t.Expect, " and ")
	}
	fmt.Fprintf(o.Out, "failure: %s\n", p(what))
	for _, r := range t.Requests {
		var seen []string
		for k, n := range r.Seen {
			seen = append(seen, fmt.Sprintf("%d x %s", n, k))
		}
		sort.Strings(seen)
		fmt.Fprintf(o.Out, "%s  %s %s  recurred %d/%d  (%s)\n", p(r.Ref), p(r.Method), p(r.Target), r.Recurred, r.Answers, strings.Join(seen, ", "))
	}
	pct := 0.0
	if t.Answers > 0 {
		pct = 100 * float64(t.Recurred) / float64(t.Answers)
	}
	fmt.Fprintf(o.Out, "recurred in %d of %d answers (%.0f%%)", t.Recurred, t.Answers, pct)
	if t.Skipped > 0 {
		fmt.Fprintf(o.Out, ", %d skipped", t.Skipped)
	}
	fmt.Fprintf(o.Out, "; latency p50 %s, p99 %s\n", t.Summary.P50.Round(10*time.Microsecond), t.Summary.P99.Round(10*time.Microsecond))
}

// logToSession appends the run's counts to the namespace's session, when
// it has one, for `tether session report`'s before and after. Without a
// session there is nothing to do; a failure to log is said, and does not
// change the run's result.
func (o *ReproduceOptions) logToSession(ctx context.Context, client daemon.Service, t Tally) {
	if t.Answers == 0 {
		return
	}
	rec := &daemon.ReproduceRecord{Workload: o.Workload, To: o.To, Expect: t.Expect, Count: o.Count,
		Recurred: t.Recurred, Answers: t.Answers, Skipped: t.Skipped}
	if o.From != "" && rec.Workload == "" {
		rec.Workload = "--from " + o.From
	}
	for _, r := range t.Requests {
		rec.Requests = append(rec.Requests, daemon.ReproduceCount{Ref: r.Ref, Method: r.Method, Target: r.Target,
			Recurred: r.Recurred, Answers: r.Answers})
	}
	_, err := client.SessionLog(ctx, daemon.SessionLogRequest{Namespace: o.Ns,
		Append: &daemon.SessionEvent{Kind: daemon.EventReproduce, Reproduce: rec}})
	switch {
	case err == nil:
		if o.Output == cmdutil.OutputText {
			fmt.Fprintf(o.ErrOut, "counts kept with the session in %s (`tether session report`)\n", o.Ns)
		}
	case errors.Is(err, daemon.ErrNoSession):
	default:
		fmt.Fprintf(o.ErrOut, "warning: the counts were not kept with the session in %s: %v\n", o.Ns, err)
	}
}
