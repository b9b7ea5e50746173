// Package sessionreport writes a debugging session down for an incident
// ticket (`tether session report`): what was changed, the failing requests
// and their answers, the traced path with a diagram, the reproduction
// counts and the rollback's result, as Markdown (a Mermaid diagram) or as
// one self-contained HTML file (an inline SVG diagram, no scripts).
//
// Everything recorded is hostile: request targets, headers and bodies,
// even names, come from whoever called the workload. Each renderer escapes
// every such string for where it lands, after recording.Printable has made
// control characters (terminal escapes) visible as text.
package sessionreport

import (
	"sort"
	"strings"
	"time"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// Report is everything a report shows.
type Report struct {
	Generated time.Time
	Session   daemon.SessionInfo
	Changes   []daemon.SessionChange

	// Requests are the failing exchanges; RequestsFrom says which
	// workload and filter chose them, RequestsNote why there are none.
	Requests     []*recording.Exchange
	RequestsFrom string
	RequestsNote string

	// Trace is the path traced; TraceNote says why there is none.
	Trace     *daemon.TraceReport
	TraceNote string

	// Events are the session's log: reproduce runs and rollbacks, oldest
	// first.
	Events []daemon.SessionEvent
}

// Reproductions are the reproduce runs, oldest first.
func (r *Report) Reproductions() []daemon.SessionEvent { return r.events(daemon.EventReproduce) }

// Rollbacks are the rollbacks run, oldest first.
func (r *Report) Rollbacks() []daemon.SessionEvent { return r.events(daemon.EventRollback) }

func (r *Report) events(kind string) []daemon.SessionEvent {
	var out []daemon.SessionEvent
	for _, e := range r.Events {
		if e.Kind == kind && (e.Reproduce != nil || e.Rollback != nil || e.Error != "") {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// ref names an exchange as `tether requests` does.
func ref(e *recording.Exchange) string { return cmdutil.ExchangeRef(e) }

// p makes s safe for a terminal and one line; renderers escape it further.
func p(s string) string { return recording.Printable(s) }

// bodyCap bounds each body shown; the rest is said to be left out.
const bodyCap = 4096

// bodyText is a body as text for a report: its printable form, cut at
// bodyCap, and a note on what is missing.
func bodyText(m *recording.Message) (text, note string) {
	if m == nil || len(m.Body) == 0 {
		if m != nil && m.BodySize > 0 {
			return "", "body not recorded"
		}
		return "", ""
	}
	b := m.Body
	var notes []string
	if len(b) > bodyCap {
		b = b[:bodyCap]
		notes = append(notes, "cut at 4 KiB for this report")
	}
	if m.Truncated {
		notes = append(notes, "truncated when recorded")
	}
	return recording.PrintableText(string(b)), strings.Join(notes, "; ")
}

// headerLines are a message's headers, sorted, one "Name: value" each,
// printable.
func headerLines(m *recording.Message) []string {
	if m == nil {
		return nil
	}
	var out []string
	for k, vs := range m.Header {
		for _, v := range vs {
			out = append(out, p(k)+": "+p(v))
		}
	}
	sort.Strings(out)
	return out
}

// reproSummary is one reproduce run's count, "10/10 (100%)".
func reproCount(r *daemon.ReproduceRecord) string {
	pct := 0
	if r.Answers > 0 {
		pct = 100 * r.Recurred / r.Answers
	}
	return itoa(r.Recurred) + "/" + itoa(r.Answers) + " (" + itoa(pct) + "%)"
}

func expectText(r *daemon.ReproduceRecord) string {
	if len(r.Expect) == 0 {
		return "the recorded answer"
	}
	return strings.Join(r.Expect, " and ")
}

func rollbackOutcome(e daemon.SessionEvent) string {
	switch {
	case e.Error != "" && strings.Contains(e.Error, "cannot be restored in place"):
		return "refused"
	case e.Error != "":
		return "failed"
	case e.Rollback != nil && e.Rollback.Verified:
		return "restored and verified"
	}
	return "not verified"
}
