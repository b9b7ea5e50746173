package sessionreport

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// HTML writes the report as one self-contained HTML file: inline CSS, the
// diagram as inline SVG, no script and nothing fetched (a Content Security
// Policy forbids both, should anything slip through). html/template
// escapes every string for where it lands; recorded strings pass through
// recording.Printable first, so terminal escapes show as text.
func HTML(w io.Writer, r *Report) error {
	v := htmlView{Report: r, Repros: r.Reproductions()}
	if r.Trace != nil {
		v.SVG = template.HTML(SVG(PathGraph(r.Trace))) // built from escaped parts (svg.go)
	}
	if n := len(v.Repros); n > 1 {
		v.Before, v.After = v.Repros[0].Reproduce, v.Repros[n-1].Reproduce
	}
	for _, e := range r.Rollbacks() {
		v.Rollbacks = append(v.Rollbacks, rollbackView{SessionEvent: e, Outcome: rollbackOutcome(e)})
	}
	for _, e := range r.Requests {
		x := exchangeView{Ref: ref(e), Method: p(e.Request.Method), Target: p(e.Request.Target), Status: statusText(e),
			Time: stamp(e.Time), Pod: p(e.Pod), Source: p(e.Source), Latency: e.Latency().Round(10 * time.Microsecond).String()}
		body, note := bodyText(&e.Request)
		x.Request = messageText(e.Request.Method+" "+e.Request.Target+" "+e.Proto, headerLines(&e.Request), body, note)
		if e.Response != nil {
			body, note := bodyText(e.Response)
			x.Response = messageText(fmt.Sprintf("%s %d %s", e.Proto, e.Response.Status, e.Response.Reason), headerLines(e.Response), body, note)
		}
		v.Exchanges = append(v.Exchanges, x)
	}
	return page().Execute(w, v)
}

type htmlView struct {
	*Report
	SVG           template.HTML
	Exchanges     []exchangeView
	Repros        []daemon.SessionEvent
	Before, After *daemon.ReproduceRecord
	Rollbacks     []rollbackView
}

type exchangeView struct {
	Ref, Method, Target, Status, Time, Pod, Source, Latency string
	Request, Response                                       string
}

type rollbackView struct {
	daemon.SessionEvent
	Outcome string
}

// page is parsed when first used, not at every start of the CLI.
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"p":      recording.Printable,
		"text":   recordingText,
		"stamp":  stamp,
		"join":   strings.Join,
		"count":  reproCount,
		"expect": expectText,
		"first":  func(name, broken string) bool { return name != "" && name == broken },
	}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Session {{p .Session.Name}} in {{p .Session.Namespace}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #202124; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #dadce0; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; width: 100%; table-layout: fixed; }
td, th { border: 1px solid #dadce0; padding: .3em .5em; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f1f3f4; }
pre { background: #f8f9fa; border: 1px solid #dadce0; padding: .6em; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 30em; overflow: auto; }
code { overflow-wrap: anywhere; }
.ok { color: #1e8e3e; } .warn { color: #e37400; } .broken { color: #d93025; font-weight: bold; }
.diagram { overflow-x: auto; border: 1px solid #dadce0; padding: .5em; }
.summary { font-size: 1.1em; }
</style>
</head>
<body>
<h1>Debugging session {{p .Session.Name}} in {{p .Session.Namespace}}</h1>
<p>Started {{stamp .Session.Since}} by {{p .Session.By}}; {{.Session.Objects}} objects snapshotted (sha256 <code>{{printf "%.12s" .Session.Hash}}</code>). Report written {{stamp .Generated}}.</p>

<h2 id="changes">What was changed</h2>
{{if not .Changes}}<p>Nothing differs from the snapshot taken at the start.</p>{{else}}
<p>{{len .Changes}} objects differ from the snapshot taken at the start:</p>
<table><tr><th style="width:8em">change</th><th>object</th><th>fields</th></tr>
{{range .Changes}}<tr><td>{{p .Change}}</td><td><code>{{p .Object}}</code></td><td>{{p (join .Paths ", ")}}</td></tr>
{{end}}</table>
{{range .Changes}}<h3>{{p .Change}} {{p .Object}}</h3>
<pre class="diff">{{text .Diff}}</pre>
{{end}}{{end}}

<h2 id="requests">Failing requests</h2>
{{with .RequestsFrom}}<p>{{p .}}.</p>{{end}}
{{if not .Exchanges}}<p>{{if .RequestsNote}}{{p .RequestsNote}}{{else}}No recorded request matches.{{end}}</p>{{end}}
{{range .Exchanges}}<h3><code>{{.Ref}}</code> {{.Method}} {{.Target}} &rarr; {{.Status}}</h3>
<p>{{.Time}}, pod {{.Pod}}, from {{.Source}}, {{.Latency}}.</p>
<pre class="request">{{.Request}}</pre>
{{with .Response}}<pre class="response">{{.}}</pre>{{end}}
{{end}}

<h2 id="path">The path</h2>
{{with .Trace}}<p class="summary"><code>tether trace</code> from pod {{p .Source.Pod}} to {{p .Target.Input}}: <strong class="{{if .FirstBroken}}broken{{else}}ok{{end}}">{{p .Conclusion}}</strong></p>
<div class="diagram">{{$.SVG}}</div>
<table><tr><th style="width:6em">step</th><th style="width:10em">status</th><th>found</th></tr>
{{range .Steps}}<tr><td>{{p .Name}}</td><td class="{{.Status}}">{{.Status}}{{if first .Name $.Trace.FirstBroken}} (first break){{end}}</td><td>{{p .Summary}}{{range .Details}}<br>{{p .}}{{end}}</td></tr>
{{end}}</table>
{{else}}<p>{{if .TraceNote}}{{p .TraceNote}}{{else}}No trace was run.{{end}}</p>{{end}}

<h2 id="reproduction">Reproduction</h2>
{{if not .Repros}}<p>No <code>tether reproduce</code> run was made during the session.</p>{{else}}
{{if .Before}}<p class="summary">Before: the failure recurred <strong>{{count .Before}}</strong>; after: <strong>{{count .After}}</strong>.</p>{{end}}
<table><tr><th>when</th><th>by</th><th>target</th><th>sent to</th><th>failure</th><th>recurred</th></tr>
{{range .Repros}}<tr><td>{{stamp .At}}</td><td>{{p .By}}</td><td>{{p .Reproduce.Workload}}</td><td>{{p .Reproduce.To}}</td><td>{{p (expect .Reproduce)}}</td><td>{{count .Reproduce}}</td></tr>
{{end}}</table>{{end}}

<h2 id="rollback">Rollback</h2>
{{if not .Rollbacks}}<p><code>tether session rollback</code> was not run.</p>{{end}}
{{range .Rollbacks}}<p>{{stamp .At}} by {{p .By}}: <strong>{{.Outcome}}</strong>.</p>
{{with .Error}}<pre>{{text .}}</pre>{{end}}
{{with .Rollback}}{{if or .Steps .Tether}}<table><tr><th style="width:8em">action</th><th>object</th><th>note</th></tr>
{{range $t := .Tether}}{{range .Steps}}<tr><td>{{p .Action}}</td><td>{{p .Object}}</td><td>tether's {{p $t.Workload}}</td></tr>
{{end}}{{end}}{{range .Steps}}<tr><td>{{p .Action}}</td><td>{{p .Object}}</td><td>{{p .Reason}}{{if and .Reason .Note}}; {{end}}{{p .Note}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{end}}
</body>
</html>
`))
})
