package requests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// ListOptions are the flags and dependencies of `tether requests list`.
type ListOptions struct {
	WorkloadOptions
	FilterFlags

	// Now is the clock --since counts back from.
	Now func() time.Time
}

// NewCmdList returns `requests list`; runF replaces Run in tests.
func NewCmdList(f *cmdutil.Factory, runF func(context.Context, *ListOptions) error) *cobra.Command {
	o := &ListOptions{WorkloadOptions: newWorkloadOptions(f), Now: time.Now}
	cmd := &cobra.Command{
		Use:   "list WORKLOAD",
		Short: "List the recorded requests: id, time, pod, method, path, status, latency, size, destination",
		Long: `List the exchanges WORKLOAD's agents hold, oldest first, one line each: its
name (for ` + "`requests show`" + ` and ` + "`tether replay`" + `), time, pod, method, path, status,
latency, response size and destination. The flags select by status, method,
path prefix and age; --limit keeps the newest N.`,
		Example: `  tether requests list deploy/orders
  tether requests list orders --status 5xx --since 10m
  tether requests list orders --method POST --path /orders --limit 20 -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	AddFilterFlags(cmd, &o.FilterFlags)
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and resolves the namespace.
func (o *ListOptions) Complete(args []string) error { return o.complete(args[0]) }

// Validate checks the options without I/O.
func (o *ListOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	return o.FilterFlags.Validate()
}

// Run reads the selected exchanges and lists them.
func (o *ListOptions) Run(ctx context.Context) error {
	f, err := o.Filter(o.Now())
	if err != nil {
		return err
	}
	return o.list(ctx, f)
}

// listed is one row of `requests list -o json`.
type listed struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Pod         string    `json:"pod"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Status      int       `json:"status"`
	LatencyMs   float64   `json:"latencyMillis"`
	Size        int64     `json:"responseBytes"`
	Destination string    `json:"destination"`
	// Proto is HTTP/1.1, HTTP/1.0 or HTTP/2.0; GRPCStatus the answer's
	// grpc-status for gRPC calls.
	Proto      string `json:"proto"`
	GRPCStatus string `json:"grpcStatus,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (o *ListOptions) list(ctx context.Context, f recording.Filter) error {
	got, _, err := o.read(ctx, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload, Filter: f, WithoutBodies: true, Limit: o.Limit})
	if err != nil {
		return err
	}
	rows := make([]listed, 0, len(got))
	for _, e := range got {
		rows = append(rows, toListed(e))
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(o.ErrOut, "no recorded requests match")
		return nil
	}
	return writeList(o.Out, rows)
}

func toListed(e *recording.Exchange) listed {
	r := listed{ID: Ref(e), Time: e.Time, Pod: e.Pod, Method: e.Request.Method, Path: e.Request.Target, Status: e.Status(),
		LatencyMs: float64(e.Latency().Microseconds()) / 1000, Destination: e.Destination, Error: e.Error,
		Proto: e.Proto, GRPCStatus: e.GRPCStatus()}
	if e.Response != nil {
		r.Size = e.Response.BodySize
	}
	return r
}

// writeList prints rows as a table for people, recorded text escaped.
func writeList(w io.Writer, rows []listed) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tPOD\tMETHOD\tPATH\tSTATUS\tLATENCY\tSIZE\tTO")
	for _, r := range rows {
		status := fmt.Sprint(r.Status)
		if r.Status == 0 {
			status = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", recording.Printable(r.ID), r.Time.Local().Format("15:04:05.000"), recording.Printable(r.Pod), recording.Printable(r.Method),
			short(recording.Printable(r.Path), 60), status, time.Duration(r.LatencyMs*float64(time.Millisecond)).Round(10*time.Microsecond), humanBytes(r.Size), recording.Printable(r.Destination))
	}
	return tw.Flush()
}

// short cuts s to n bytes or fewer, at a rune boundary.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 1
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMi", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKi", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// ShowOptions are the flags and dependencies of `tether requests show`.
type ShowOptions struct {
	WorkloadOptions

	// Ref names the exchange, as ` + "`requests list`" + ` shows it.
	Ref string
}

// NewCmdShow returns `requests show`; runF replaces Run in tests.
func NewCmdShow(f *cmdutil.Factory, runF func(context.Context, *ShowOptions) error) *cobra.Command {
	o := &ShowOptions{WorkloadOptions: newWorkloadOptions(f)}
	cmd := &cobra.Command{
		Use:   "show WORKLOAD ID",
		Short: "Show one recorded exchange whole: headers and bodies (JSON pretty-printed, binary as hex)",
		Long: `Show one exchange WORKLOAD's agents recorded: when, between whom, its timings,
the request and the response with their headers (redacted ones named) and
bodies. JSON bodies are indented, text is printed as is, binary bodies as a
hex summary. ID is the name ` + "`requests list`" + ` shows, e.g. x2x.17, or just 17
when one pod recorded.`,
		Example: `  tether requests show deploy/orders x2x.17
  tether requests show orders 17 -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(2)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and ID and resolves the namespace.
func (o *ShowOptions) Complete(args []string) error {
	o.Ref = args[1]
	return o.complete(args[0])
}

// Validate checks the options without I/O.
func (o *ShowOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	_, _, err := ParseRef(o.Ref)
	return err
}

// Run reads the exchange and prints it.
func (o *ShowOptions) Run(ctx context.Context) error {
	_, id, err := ParseRef(o.Ref)
	if err != nil {
		return err
	}
	got, _, err := o.read(ctx, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload,
		Filter: recording.Filter{IDs: []uint64{id}}})
	if err != nil {
		return err
	}
	e, err := Find(o.Ref, got)
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, e)
	}
	show(o.Out, e)
	return nil
}

// show prints an exchange for people; every recorded text is escaped
// (recording.Printable), bodies keeping their lines.
func show(w io.Writer, e *recording.Exchange) {
	fmt.Fprintf(w, "%s  %s  pod %s  from %s  to %s  %s\n", recording.Printable(Ref(e)), e.Time.Local().Format(time.RFC3339Nano), recording.Printable(e.Pod), recording.Printable(e.Source), recording.Printable(e.Destination), recording.Printable(e.Proto))
	fmt.Fprintf(w, "timings: send %s, wait %s, receive %s\n", e.Send.Round(time.Microsecond), e.Wait.Round(time.Microsecond), e.Receive.Round(time.Microsecond))
	if e.Error != "" {
		fmt.Fprintf(w, "incomplete: %s\n", recording.Printable(e.Error))
	}
	fmt.Fprintf(w, "\n%s %s\n", recording.Printable(e.Request.Method), recording.Printable(e.Request.Target))
	message(w, &e.Request)
	if e.Response == nil {
		fmt.Fprintln(w, "\n(no response)")
		return
	}
	fmt.Fprintf(w, "\n%d %s\n", e.Response.Status, recording.Printable(e.Response.Reason))
	message(w, e.Response)
}

func message(w io.Writer, m *recording.Message) {
	var keys []string
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range m.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", recording.Printable(k), recording.Printable(v))
		}
	}
	if len(m.Redacted) > 0 {
		fmt.Fprintf(w, "(redacted: %s)\n", recording.Printable(strings.Join(m.Redacted, ", ")))
	}
	if m.BodySize > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, recording.PrintableText(body(m)))
		if m.Truncated {
			fmt.Fprintf(w, "(body truncated: %d of %d bytes recorded)\n", len(m.Body), m.BodySize)
		}
	}
	keys = keys[:0]
	for k := range m.Trailer {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range m.Trailer[k] {
			fmt.Fprintf(w, "trailer %s: %s\n", recording.Printable(k), recording.Printable(v))
		}
	}
}

// body renders a body: JSON indented, text as is, binary as a hex summary.
func body(m *recording.Message) string {
	b := m.Body
	var out bytes.Buffer
	if json.Valid(b) && json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return r < ' ' && r != '\n' && r != '\r' && r != '\t' }) {
		return string(b)
	}
	n := min(len(b), 64)
	return fmt.Sprintf("(binary, %d bytes, %s) % x…", len(b), http.DetectContentType(b), b[:n])
}
