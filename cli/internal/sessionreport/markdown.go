package sessionreport

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Markdown writes the report as Markdown (GitHub's flavour: tables, fenced
// blocks, a ```mermaid diagram). Recorded text sits in fenced blocks
// (longer fences than any backtick run inside) or is escaped (mdText), so
// no recorded string becomes markup, HTML or a link.
func Markdown(w io.Writer, r *Report) error {
	b := &strings.Builder{}
	s := r.Session
	fmt.Fprintf(b, "# Debugging session %s in %s\n\n", mdText(s.Name), mdText(s.Namespace))
	fmt.Fprintf(b, "Started %s by %s; %d objects snapshotted (sha256 `%.12s`). Report written %s.\n\n",
		stamp(s.Since), mdText(s.By), s.Objects, s.Hash, stamp(r.Generated))

	b.WriteString("## What was changed\n\n")
	if len(r.Changes) == 0 {
		b.WriteString("Nothing differs from the snapshot taken at the start.\n\n")
	} else {
		fmt.Fprintf(b, "%d objects differ from the snapshot taken at the start:\n\n| change | object | fields |\n| --- | --- | --- |\n", len(r.Changes))
		for _, c := range r.Changes {
			fmt.Fprintf(b, "| %s | %s | %s |\n", mdCell(c.Change), mdCell(c.Object), mdCell(strings.Join(c.Paths, ", ")))
		}
		b.WriteString("\n")
		for _, c := range r.Changes {
			fmt.Fprintf(b, "### %s %s\n\n", mdText(c.Change), mdText(c.Object))
			fence(b, "diff", c.Diff)
		}
	}

	b.WriteString("## Failing requests\n\n")
	if r.RequestsFrom != "" {
		fmt.Fprintf(b, "%s.\n\n", mdText(r.RequestsFrom))
	}
	if len(r.Requests) == 0 {
		fmt.Fprintf(b, "%s\n\n", mdText(orDefault(r.RequestsNote, "No recorded request matches.")))
	}
	for _, e := range r.Requests {
		fmt.Fprintf(b, "### `%s` %s %s -> %s\n\n", ref(e), mdText(p(e.Request.Method)), mdText(p(e.Request.Target)), mdText(statusText(e)))
		fmt.Fprintf(b, "%s, pod %s, from %s, %s.\n\n", stamp(e.Time), mdText(p(e.Pod)), mdText(p(e.Source)), e.Latency().Round(10*time.Microsecond))
		req, reqNote := bodyText(&e.Request)
		fence(b, "http", messageText(e.Request.Method+" "+e.Request.Target+" "+e.Proto, headerLines(&e.Request), req, reqNote))
		if e.Response != nil {
			body, note := bodyText(e.Response)
			fence(b, "http", messageText(fmt.Sprintf("%s %d %s", e.Proto, e.Response.Status, e.Response.Reason), headerLines(e.Response), body, note))
		}
	}

	b.WriteString("## The path\n\n")
	if r.Trace == nil {
		fmt.Fprintf(b, "%s\n\n", mdText(orDefault(r.TraceNote, "No trace was run.")))
	} else {
		t := r.Trace
		fmt.Fprintf(b, "`tether trace` from pod %s to %s: **%s**\n\n", mdText(t.Source.Pod), mdText(t.Target.Input), mdText(t.Conclusion))
		b.WriteString("```mermaid\n")
		b.WriteString(Mermaid(PathGraph(t)))
		b.WriteString("```\n\n| step | status | found |\n| --- | --- | --- |\n")
		var details strings.Builder
		for _, st := range t.Steps {
			status := string(st.Status)
			if st.Name == t.FirstBroken {
				status = "**" + status + " (first break)**"
			}
			fmt.Fprintf(b, "| %s | %s | %s |\n", mdCell(st.Name), status, mdCell(st.Summary))
			if len(st.Details) > 0 {
				fmt.Fprintf(&details, "%s:\n", st.Name)
				for _, d := range st.Details {
					fmt.Fprintf(&details, "  %s\n", d)
				}
			}
		}
		b.WriteString("\n")
		if details.Len() > 0 {
			fence(b, "text", details.String())
		}
	}

	b.WriteString("## Reproduction\n\n")
	repros := r.Reproductions()
	if len(repros) == 0 {
		b.WriteString("No `tether reproduce` run was made during the session.\n\n")
	} else {
		if len(repros) > 1 {
			first, last := repros[0].Reproduce, repros[len(repros)-1].Reproduce
			fmt.Fprintf(b, "Before: the failure recurred %s; after: %s.\n\n", reproCount(first), reproCount(last))
		}
		b.WriteString("| when | by | target | sent to | failure | recurred |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, e := range repros {
			x := e.Reproduce
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", stamp(e.At), mdCell(e.By), mdCell(x.Workload), mdCell(x.To), mdCell(expectText(x)), reproCount(x))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Rollback\n\n")
	rbs := r.Rollbacks()
	if len(rbs) == 0 {
		b.WriteString("`tether session rollback` was not run.\n\n")
	}
	for _, e := range rbs {
		fmt.Fprintf(b, "%s by %s: **%s**.\n\n", stamp(e.At), mdText(e.By), rollbackOutcome(e))
		if e.Error != "" {
			fence(b, "text", e.Error)
		}
		if e.Rollback != nil && len(e.Rollback.Steps)+len(e.Rollback.Tether) > 0 {
			b.WriteString("| action | object | note |\n| --- | --- | --- |\n")
			for _, t := range e.Rollback.Tether {
				for _, st := range t.Steps {
					fmt.Fprintf(b, "| %s | %s | tether's %s |\n", mdCell(st.Action), mdCell(st.Object), mdCell(t.Workload))
				}
			}
			for _, st := range e.Rollback.Steps {
				fmt.Fprintf(b, "| %s | %s | %s |\n", mdCell(st.Action), mdCell(st.Object), mdCell(strings.TrimPrefix(st.Reason+"; "+st.Note, "; ")))
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// messageText is a message as it went on the wire, for a fenced block.
func messageText(first string, headers []string, body, note string) string {
	s := p(first) + "\n" + strings.Join(headers, "\n")
	if len(headers) > 0 {
		s += "\n"
	}
	if body != "" {
		s += "\n" + body
		if !strings.HasSuffix(body, "\n") {
			s += "\n"
		}
	}
	if note != "" {
		s += "(" + note + ")\n"
	}
	return s
}

func statusText(e interface{ Status() int }) string {
	if s := e.Status(); s != 0 {
		return fmt.Sprint(s)
	}
	return "no answer"
}

// fence writes text in a fenced block longer than any backtick run in it.
func fence(b *strings.Builder, lang, text string) {
	n, run := 3, 0
	for _, r := range text {
		if r == '`' {
			run++
			n = max(n, run+1)
		} else {
			run = 0
		}
	}
	f := strings.Repeat("`", n)
	text = recordingText(text)
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	fmt.Fprintf(b, "%s%s\n%s%s\n\n", f, lang, text, f)
}

// recordingText keeps newlines and makes every other control visible.
func recordingText(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p(line))
	}
	return b.String()
}

// mdText escapes text for Markdown prose: no markup, no HTML, no links.
func mdText(s string) string {
	s = p(s)
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\\', '`', '*', '_', '[', ']', '(', ')', '#', '|', '!', '~', '{', '}':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdCell is mdText for a table cell; empty cells show a dash.
func mdCell(s string) string {
	if s == "" {
		return "-"
	}
	return mdText(s)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
