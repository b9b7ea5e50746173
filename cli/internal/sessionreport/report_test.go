package sessionreport

import (
	"bytes"
	"encoding/xml"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// hostile is what a caller may put in a recorded request: markup, a
// script, a fence, a terminal escape that clears the screen, a bidi
// override.
const hostile = "<script>alert(1)</script>```\x1b[2J\x1b]0;owned\x07\u202e</pre>|[x](javascript:alert(2))"

func fixture() *Report {
	return &Report{
		Generated: t0.Add(time.Hour),
		Session:   daemon.SessionInfo{Name: "incident-42", Namespace: "shop", Since: t0, By: "ana@laptop", Objects: 7, Hash: "0123456789abcdef0123"},
		Changes: []daemon.SessionChange{
			{Object: "deployment/orders", Kind: "Deployment", Name: "orders", Change: "modified", Paths: []string{"spec.replicas"},
				Diff: "--- snapshot/deployment/orders\n+++ cluster/deployment/orders\n@@ -1,1 +1,1 @@\n-  replicas: 2\n+  replicas: 1\n"},
			{Object: "service/debug", Kind: "Service", Name: "debug", Change: "created", Diff: "--- /dev/null\n+++ cluster/service/debug\n"},
		},
		RequestsFrom: "Recorded by orders's agents since the session started, status 5xx",
		Requests: []*recording.Exchange{{ID: 17, Time: t0.Add(5 * time.Minute), Pod: "orders-7d9c-x2x", Source: "10.42.0.9:51234", Proto: "HTTP/1.1",
			Request: recording.Message{Method: "POST", Target: "/orders/42/checkout?c=" + hostile,
				Header: http.Header{"Content-Type": {"application/json"}, "X-Evil": {hostile}, "Authorization": {"[REDACTED]"}},
				Body:   []byte(`{"coupon":"HALFOFF","note":"` + hostile + `"}`)},
			Response: &recording.Message{Status: 500, Reason: "Internal Server Error", Header: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(`{"error":"pricing: no discount rule for coupon \"HALFOFF\""}`)},
			Wait: 1200 * time.Microsecond}},
		Trace: &daemon.TraceReport{
			Source: daemon.TraceSource{Pod: "client-5b7f-abcde", Namespace: "shop", IP: "10.42.0.9", PickedFrom: "deploy/client"},
			Target: daemon.TraceTarget{Input: "svc/orders", Kind: "service", Namespace: "shop", Name: "orders"},
			Steps: []daemon.TraceStep{
				{Name: "dns", Status: daemon.TraceOK, Summary: "orders.shop.svc.cluster.local -> 10.43.0.10",
					DNS: &daemon.TraceDNSResult{Name: "orders", Addresses: []string{"10.43.0.10"}}},
				{Name: "service", Status: daemon.TraceWarn, Summary: "1 of 2 endpoints ready",
					Service: &daemon.TraceServiceResult{Namespace: "shop", Name: "orders", ClusterIP: "10.43.0.10", SelectedPods: 2,
						Port: &daemon.TracePortMapping{Name: "http", Protocol: "TCP", Port: 80, TargetPort: "http"},
						Endpoints: []daemon.TraceEndpoint{
							{Address: "10.42.0.20", Port: 3000, Pod: "orders-7d9c-x2x", Ready: true},
							{Address: "10.42.0.21", Port: 3000, Pod: "orders-7d9c-" + hostile, Ready: false, Reason: "readiness probe failing"}}}},
				{Name: "policy", Status: daemon.TraceBroken, Summary: "1 of 2 endpoints denied",
					Details: []string{"pod orders-7d9c-x2x: denied by shop/deny-all"},
					Policy:  &daemon.TracePolicyResult{Verdicts: []daemon.TracePolicyVerdict{denied("pod orders-7d9c-x2x", "shop/deny-all")}}},
				{Name: "probe", Status: daemon.TraceBroken, Summary: "0 of 2 connected",
					Probe: &daemon.TraceProbeResult{Probes: []daemon.TraceProbe{
						{What: "service", Address: "10.43.0.10:80", Error: "i/o timeout"},
						{What: "endpoint", Address: "10.42.0.20:3000", Pod: "orders-7d9c-x2x", Error: "i/o timeout"}}}},
			},
			FirstBroken: "policy", Conclusion: "broken at policy: shop/deny-all denies ingress to pod orders-7d9c-x2x",
		},
		Events: []daemon.SessionEvent{
			{Kind: daemon.EventRollback, At: t0.Add(40 * time.Minute), By: "ana@laptop",
				Rollback: &daemon.SessionRollbackResult{Verified: true, Steps: []daemon.SessionStep{
					{Object: "deployment/orders", Action: "update"}, {Object: "service/debug", Action: "delete"}}}},
			{Kind: daemon.EventReproduce, At: t0.Add(10 * time.Minute), By: "ana@laptop",
				Reproduce: &daemon.ReproduceRecord{Workload: "orders", To: "cluster", Expect: []string{"status=500"}, Count: 10, Recurred: 10, Answers: 10}},
			{Kind: daemon.EventReproduce, At: t0.Add(30 * time.Minute), By: "ana@laptop",
				Reproduce: &daemon.ReproduceRecord{Workload: "orders", To: "local:3000", Expect: []string{"status=500"}, Count: 10, Recurred: 0, Answers: 10}},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	golden(t, "report.md", b.Bytes())
	for _, want := range []string{
		"| modified | deployment/orders | spec.replicas |", "+  replicas: 1",
		"### `x2x.17` POST /orders/42/checkout?c=&lt;script&gt;",
		`{"error":"pricing: no discount rule for coupon \"HALFOFF\""}`,
		"```mermaid\nflowchart LR\n",
		"Before: the failure recurred 10/10 (100%); after: 0/10 (0%).",
		"| 2026-11-30 12:10:00Z | ana@laptop | orders | cluster | status=500 | 10/10 (100%) |",
		"2026-11-30 12:40:00Z by ana@laptop: **restored and verified**.", "| delete | service/debug | - |",
		"| policy | **broken (first break)** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the Markdown lacks %q", want)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Error("a control character reached the Markdown")
	}
	// Outside fenced blocks, recorded markup is escaped: no raw tag, no link.
	inFence := ""
	for i, line := range strings.Split(out, "\n") {
		if f := strings.TrimRight(line, "abcdefghijklmnopqrstuvwxyz"); strings.HasPrefix(f, "```") && strings.Trim(f, "`") == "" {
			switch {
			case inFence == "":
				inFence = f
			case f == inFence:
				inFence = ""
			}
			continue
		}
		if inFence == "" && (strings.Contains(line, "<script") || strings.Contains(line, "](javascript")) {
			t.Errorf("line %d: recorded markup outside a fence: %q", i+1, line)
		}
	}
	if inFence != "" {
		t.Errorf("a fence %q is never closed", inFence)
	}
}

func TestMermaid(t *testing.T) {
	got := Mermaid(PathGraph(fixture().Trace))
	golden(t, "path.mmd", []byte(got))
	for _, want := range []string{
		`n0["pod client-5b7f-abcde<br/>10.42.0.9<br/>of deploy/client"]`,
		`n1(["svc orders<br/>10.43.0.10:80 -#62; http<br/>2 pods selected"])`,
		`n1 -.->|"policy DENIES (shop/deny-all)#59; connect failed: i/o timeout"| n2`,
		"class n3 broken", "linkStyle 0 stroke:#d93025",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the Mermaid text lacks %q:\n%s", want, got)
		}
	}
	// Every label is one quoted string: a recorded quote, bracket or
	// newline cannot close it.
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if n := strings.Count(line, `"`); n != 0 && n != 2 {
			t.Errorf("line with %d quotes: %q", n, line)
		}
		if strings.ContainsAny(line, "<>`\x1b") && !strings.Contains(line, "<br/>") && !strings.Contains(line, "-->") && !strings.Contains(line, "-.->") {
			t.Errorf("unescaped character in %q", line)
		}
	}
	if strings.Contains(got, "script") && strings.Contains(got, "<script") {
		t.Errorf("a tag in the Mermaid text:\n%s", got)
	}
}

func TestMermaidText(t *testing.T) {
	for in, want := range map[string]string{
		"pod orders-1":  "pod orders-1",
		`a"b`:           "a#34;b",
		"<b>x</b>":      "#60;b#62;x#60;/b#62;",
		"x\ny":          `x#92;ny`,
		"a|b[c]{d};e`f": "a#124;b#91;c#93;#123;d#125;#59;e#96;f",
	} {
		if got := mermaidText(in); got != want {
			t.Errorf("mermaidText(%q) = %q, want %q", in, got, want)
		}
	}
}

// svgDoc is the SVG's elements, parsed as XML.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Title   string   `xml:"title"`
	Groups  []struct {
		ID    string `xml:"id,attr"`
		Class string `xml:"class,attr"`
		Rects []struct {
			Stroke string `xml:"stroke,attr"`
		} `xml:"rect"`
		Lines []struct {
			Dash string `xml:"stroke-dasharray,attr"`
		} `xml:"line"`
		Texts []string `xml:"text"`
	} `xml:"g"`
}

func TestSVG(t *testing.T) {
	got := SVG(PathGraph(fixture().Trace))
	var doc svgDoc
	if err := xml.Unmarshal([]byte(got), &doc); err != nil {
		t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, got)
	}
	type g struct {
		ID, Class string
		Texts     []string
	}
	var groups []g
	rects, lines := 0, 0
	for _, x := range doc.Groups {
		groups = append(groups, g{x.ID, x.Class, x.Texts})
		rects += len(x.Rects)
		lines += len(x.Lines)
	}
	if rects != 4 || lines != 3 {
		t.Errorf("%d boxes and %d arrows, want 4 (pod, Service, 2 endpoints) and 3", rects, lines)
	}
	want := []g{
		{"edge-0", "edge broken", []string{"DNS 10.43.0.10; connect", "failed: i/o timeout"}},
		{"edge-1", "edge broken", []string{"policy DENIES", "(shop/deny-all); connect", "failed: i/o timeout"}},
		{"edge-2", "edge none", nil},
		{"node-n0", "node pod ok", []string{"pod client-5b7f-abcde", "10.42.0.9", "of deploy/client"}},
		{"node-n1", "node service warn", []string{"svc orders", "10.43.0.10:80 -> http", "2 pods selected"}},
		{"node-n2", "node endpoint ok", []string{"pod orders-7d9c-x2x", "10.42.0.20:3000", "ready"}},
		{"node-n3", "node endpoint broken", []string{`pod orders-7d9c-<script>alert(1)<…`, "10.42.0.21:3000", "not ready readiness probe failing"}},
	}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("SVG groups (-want +got):\n%s", diff)
	}
	if strings.Contains(got, "<script") || strings.ContainsAny(got, "\x1b\x07") {
		t.Errorf("recorded markup or a control character in the SVG:\n%s", got)
	}
	if doc.Title != "the traced path: broken at policy: shop/deny-all denies ingress to pod orders-7d9c-x2x" {
		t.Errorf("title %q", doc.Title)
	}
}

func TestHTML(t *testing.T) {
	var b bytes.Buffer
	if err := HTML(&b, fixture()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	golden(t, "report.html", b.Bytes())
	for _, want := range []string{
		`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
		`<svg xmlns="http://www.w3.org/2000/svg" id="path-diagram"`,
		"<td>modified</td><td><code>deployment/orders</code></td><td>spec.replicas</td>",
		"X-Evil: &lt;script&gt;alert(1)&lt;/script&gt;```\\x1b[2J\\x1b]0;owned\\x07\\u202e&lt;/pre&gt;",
		"Before: the failure recurred <strong>10/10 (100%)</strong>; after: <strong>0/10 (0%)</strong>.",
		"<strong>restored and verified</strong>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the HTML lacks %q", want)
		}
	}
	if n := strings.Count(out, "<script"); n != 0 {
		t.Errorf("%d <script tags in the HTML", n)
	}
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "src=", "href=", "@import", "url(http"} {
		if strings.Contains(out, bad) {
			t.Errorf("the HTML holds %q", bad)
		}
	}
	// Every <pre> that opens closes before the next one: a recorded </pre>
	// cannot end a block early.
	if o, c := strings.Count(out, "<pre"), strings.Count(out, "</pre>"); o != c {
		t.Errorf("%d <pre> and %d </pre>", o, c)
	}
}

func TestEmptyReport(t *testing.T) {
	r := &Report{Session: daemon.SessionInfo{Name: "s", Namespace: "shop", Since: t0}, Generated: t0,
		RequestsNote: "No workload named: give WORKLOAD to list its failing requests", TraceNote: "No trace: give --trace FROM,TO"}
	var md, h bytes.Buffer
	if err := Markdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if err := HTML(&h, r); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{md.String(), h.String()} {
		for _, want := range []string{"Nothing differs from the snapshot", "No workload named", "No trace: give --trace FROM,TO",
			"was made during the session.", "was not run."} {
			if !strings.Contains(out, want) {
				t.Errorf("lacks %q:\n%s", want, out)
			}
		}
	}
}

// denied is a verdict whose ingress policy denies dest.
func denied(dest, policy string) daemon.TracePolicyVerdict {
	v := daemon.TracePolicyVerdict{Destination: dest, Port: 3000}
	v.Egress.Allowed = true
	v.Ingress.Selecting, v.Ingress.Reason = []string{policy}, "no rule allows"
	return v
}
