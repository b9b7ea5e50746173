package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/cli/internal/sessionreport"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// Report formats.
const (
	FormatMarkdown = "md"
	FormatHTML     = "html"
)

// defaultRequestLimit bounds the failing requests a report shows.
const defaultRequestLimit = 20

// ReportOptions are the flags and dependencies of `tether session report`.
type ReportOptions struct {
	Options
	// Workload's recorded requests are listed; empty: the workload of the
	// session's last reproduce run.
	Workload string
	File     string
	Format   string
	// Trace is FROM and TO, traced for the report's diagram.
	Trace      []string
	AgentImage string
	Filter     requests.FilterFlags

	Now   func() time.Time
	Write func(path string, data []byte) error
}

// NewCmdReport returns `session report`; runF replaces Run in tests.
func NewCmdReport(f *cmdutil.Factory, runF func(context.Context, *ReportOptions) error) *cobra.Command {
	o := &ReportOptions{Options: newOptions(f), Now: time.Now, Write: podfiles.WriteFileAtomic}
	cmd := &cobra.Command{
		Use:   "report [WORKLOAD] -f report.md|report.html",
		Short: "Write the session down for the incident ticket, as Markdown or one HTML file",
		Long: `Write what happened during the namespace's session:

  what was changed     the session's diff, object by object
  failing requests     WORKLOAD's recorded exchanges since the session
                       started with status 5xx (or what the filter flags
                       select, as for 'tether requests list'), redacted as
                       recorded; tether's own replays are left out
  the path             a trace (--trace FROM,TO, as 'tether trace FROM TO')
                       drawn as pod -> Service -> endpoints with the
                       NetworkPolicy verdicts and where it broke
  reproduction         every 'tether reproduce' run of the session, with
                       its counts: the first is "before", the last "after"
  rollback             what 'tether session rollback' restored, verified
                       or refused

-f FILE.md writes Markdown with a Mermaid diagram (GitHub and GitLab draw
it); -f FILE.html one self-contained HTML file with an inline SVG diagram
and no scripts, which opens offline. Recorded text is escaped for either.
Without WORKLOAD, the workload of the session's last reproduce run is used.`,
		Example: `  tether session report -n shop -f incident-42.md
  tether session report orders -n shop -f incident-42.html --trace deploy/frontend,svc/orders
  tether session report orders -n shop -f report.md --status 4xx --path /orders --since 30m`,
		Args: cmdutil.Args(cobra.MaximumNArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.File, "file", "f", "", "the report's file: .md for Markdown, .html for HTML (required)")
	fl.StringVar(&o.Format, "format", "", "md or html (default: from the file's extension)")
	fl.StringSliceVar(&o.Trace, "trace", nil, "trace FROM,TO for the path's diagram, e.g. deploy/frontend,svc/orders")
	fl.StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image, for --trace")
	requests.AddFilterFlags(cmd, &o.Filter)
	return cmd
}

// Complete takes WORKLOAD, resolves the namespace and the format.
func (o *ReportOptions) Complete(args []string) error {
	if len(args) == 1 {
		o.Workload = args[0]
	}
	if o.Format == "" {
		switch strings.ToLower(filepath.Ext(o.File)) {
		case ".md", ".markdown":
			o.Format = FormatMarkdown
		case ".html", ".htm":
			o.Format = FormatHTML
		}
	}
	return o.complete()
}

// Validate checks the options without I/O.
func (o *ReportOptions) Validate() error {
	if o.File == "" {
		return errdefs.User("name the report's file with -f FILE.md (Markdown) or -f FILE.html (one HTML file)")
	}
	switch o.Format {
	case FormatMarkdown, FormatHTML:
	case "":
		return errdefs.User("-f %s: end the name in .md or .html, or say --format md|html", o.File)
	default:
		return errdefs.User("--format %q: write md or html", o.Format)
	}
	if len(o.Trace) > 0 && (len(o.Trace) != 2 || strings.TrimSpace(o.Trace[0]) == "" || strings.TrimSpace(o.Trace[1]) == "") {
		return errdefs.User("--trace %s: write FROM,TO as for `tether trace FROM TO`, e.g. deploy/frontend,svc/orders", strings.Join(o.Trace, ","))
	}
	return o.Filter.Validate()
}

// Run gathers the session's log, diff, failing requests and trace from the
// daemon and writes the report. What cannot be gathered (no agent records
// the workload, the trace fails) is said in the report, not fatal; no
// session is a user error, and no file is written.
func (o *ReportOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	log, err := client.SessionLog(ctx, daemon.SessionLogRequest{Namespace: o.Ns})
	if err != nil {
		return err
	}
	diff, err := client.SessionDiff(ctx, o.Ns)
	if err != nil {
		return err
	}
	r := &sessionreport.Report{Generated: o.Now().UTC(), Session: log.Session, Changes: diff.Changes, Events: log.Events}
	o.gatherRequests(ctx, client, r)
	o.gatherTrace(ctx, client, r)

	var b bytes.Buffer
	render := sessionreport.Markdown
	if o.Format == FormatHTML {
		render = sessionreport.HTML
	}
	if err := render(&b, r); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if o.File == "-" {
		_, err = o.Out.Write(b.Bytes())
		return err
	}
	if err := o.Write(o.File, b.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Wrote %s: %d changed objects, %d failing requests, %s, %d reproduce runs, %d rollbacks.\n",
		o.File, len(r.Changes), len(r.Requests), traceWord(r), len(r.Reproductions()), len(r.Rollbacks()))
	return nil
}

func (o *ReportOptions) gatherRequests(ctx context.Context, client daemon.Service, r *sessionreport.Report) {
	workload := o.Workload
	if workload == "" {
		repros := r.Reproductions()
		for i := len(repros) - 1; i >= 0 && workload == ""; i-- {
			if w := repros[i].Reproduce.Workload; !strings.HasPrefix(w, "--from ") {
				workload = w
			}
		}
	}
	if workload == "" {
		r.RequestsNote = "No workload named: `tether session report WORKLOAD` lists the failing requests its agents recorded."
		return
	}
	ff := o.Filter
	selection := []string{}
	if ff.Status == "" && ff.Method == "" && ff.Path == "" {
		ff.Status = "5xx"
	}
	f, err := ff.Filter(o.Now())
	if err != nil {
		r.RequestsNote = err.Error()
		return
	}
	if f.Since.IsZero() || f.Since.Before(r.Session.Since) {
		f.Since = r.Session.Since
	}
	for _, s := range []struct{ name, v string }{{"status", f.Status}, {"method", f.Method}, {"path", f.PathPrefix}} {
		if s.v != "" {
			selection = append(selection, s.name+" "+s.v)
		}
	}
	r.RequestsFrom = fmt.Sprintf("Recorded by %s's agents since %s, %s", workload, f.Since.UTC().Format(time.RFC3339), strings.Join(selection, ", "))
	got, _, err := requests.Read(ctx, client, daemon.RequestsRequest{Namespace: o.Ns, Workload: workload, Filter: f}, o.ErrOut)
	if err != nil {
		r.RequestsNote = "The recorded requests could not be read: " + err.Error()
		return
	}
	replays := 0
	for _, e := range got {
		if replay.IsReplay(e) {
			replays++
			continue
		}
		r.Requests = append(r.Requests, e)
	}
	sort.SliceStable(r.Requests, func(i, j int) bool { return r.Requests[i].Time.Before(r.Requests[j].Time) })
	limit := ff.Limit
	if limit == 0 {
		limit = defaultRequestLimit
	}
	if n := len(r.Requests); n > limit {
		r.RequestsFrom += fmt.Sprintf("; the newest %d of %d", limit, n)
		r.Requests = r.Requests[n-limit:]
	}
	if replays > 0 {
		r.RequestsFrom += fmt.Sprintf("; %d replays by tether left out", replays)
	}
	if len(r.Requests) == 0 {
		r.RequestsNote = "No recorded request matches."
	}
}

func (o *ReportOptions) gatherTrace(ctx context.Context, client daemon.Service, r *sessionreport.Report) {
	if len(o.Trace) == 0 {
		r.TraceNote = "No trace: `tether session report --trace FROM,TO` traces the path and draws it."
		return
	}
	fmt.Fprintf(o.ErrOut, "tracing %s -> %s\n", o.Trace[0], o.Trace[1])
	rep, err := client.Trace(ctx, daemon.TraceRequest{Namespace: o.Ns, From: o.Trace[0], To: o.Trace[1], AgentImage: o.AgentImage},
		func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		if errors.Is(err, context.Canceled) {
			r.TraceNote = "The trace was interrupted."
			return
		}
		r.TraceNote = fmt.Sprintf("The trace from %s to %s could not run: %v", o.Trace[0], o.Trace[1], err)
		fmt.Fprintf(o.ErrOut, "warning: %s\n", recording.Printable(r.TraceNote))
		return
	}
	r.Trace = &rep
}

func traceWord(r *sessionreport.Report) string {
	switch {
	case r.Trace == nil:
		return "no trace"
	case r.Trace.FirstBroken != "":
		return "the path broken at " + r.Trace.FirstBroken
	}
	return "the path healthy"
}
