//go:build integration

package integration

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/integration/demoapp"
)

// hostileBody is what a caller sent: markup, a script, terminal escapes
// that clear the screen and retitle the window, a bidi override.
const hostileBody = "<script>document.title='owned'</script></pre><img src=x onerror=alert(1)>\x1b[2J\x1b]0;owned\x07\u202e"

// TestSessionReport: a session on the demo app, a change (scaled to 2), the
// failing checkout recorded (with a hostile body), a reproduce run against
// the cluster (10/10) and one against the fix (0/10), then `session report`
// as Markdown (the diff, the failing request, a mermaid block, the counts)
// and as HTML, which a real headless Chromium opens without console errors
// and renders with the diagram; after a rollback, the report says so.
func TestSessionReport(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium: install Debian's chromium (integration/cluster/install-deps.sh, run by `make deps`): %v", err)
	}
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("session", "start", "incident-7")
	e.scaleOrders(2)
	e.waitAvailable("orders", 2)
	e.mustTether("record", "orders", "--port", "http")
	base := "http://orders." + e.ns + ".svc.cluster.local"
	e.exec(client, "/tether-demo", "post", base+"/orders/42/checkout", hostileBody, "X-Note:<script>alert(2)</script>")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := demoapp.NewServer("laptop")
	fixed.Fixed = true
	srv := &http.Server{Handler: fixed.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	local := "local:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	reproduce := func(to string, wantCode int) {
		t.Helper()
		out, stderr, code := e.tether("reproduce", "orders", "--status", "5xx", "--to", to, "--count", "10", "--kubeconfig", e.kubeconfig, "-n", e.ns)
		if code != wantCode || !strings.Contains(stderr, "counts kept with the session") {
			t.Fatalf("reproduce --to %s: exit %d, want %d\n%s\n%s", to, code, wantCode, out, stderr)
		}
	}
	reproduce("cluster", 3)
	reproduce(local, 0)

	dir := t.TempDir()
	md := filepath.Join(dir, "incident-7.md")
	report := func(file string) string {
		t.Helper()
		out := e.mustTether(agentImage("session", "report", "orders", "-f", file, "--trace", "client,svc/orders")...)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (tether said %q)", err, out)
		}
		return string(b)
	}
	got := report(md)
	for _, want := range []string{
		// The scale, and the recording's agent (tether's change, made during the session).
		"| modified | deployment/orders | spec.replicas, ", "+  replicas: 2", "spec.template.spec.containers\\[name=tether-agent\\]",
		"POST /orders/42/checkout -> 500", `"error": "pricing: no discount rule for coupon \"HALFOFF\""`, "X-Note: <script>alert(2)</script>",
		"```mermaid\nflowchart LR\n", "svc orders",
		"Before: the failure recurred 10/10 (100%); after: 0/10 (0%).",
		"| cluster | the recorded answer | 10/10 (100%) |",
		"`tether session rollback` was not run.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the Markdown report lacks %q:\n%s", want, got)
		}
	}
	if strings.ContainsAny(got, "\x1b\x07\u202e") {
		t.Error("a terminal escape reached the Markdown report")
	}
	if !strings.Contains(got, `\x1b[2J\x1b]0;owned\x07\u202e`) {
		t.Errorf("the recorded escapes are not shown as text:\n%s", got)
	}

	html := filepath.Join(dir, "incident-7.html")
	got = report(html)
	if strings.Contains(got, "<script") || strings.Contains(got, "<img") || strings.ContainsAny(got, "\x1b\x07") {
		t.Errorf("recorded markup or escapes reached the HTML unescaped")
	}
	e.openInChromium(chromium, html)

	// A rollback is reported with what it restored.
	e.mustTether("session", "rollback")
	got = report(md)
	if !strings.Contains(got, "**restored and verified**") || !strings.Contains(got, "| update | deployment/orders |") {
		t.Errorf("the report after the rollback:\n%s", got)
	}
	e.mustTether("session", "end")

	// Bad input: exit 2, no file; no session now.
	for _, args := range [][]string{{"-f", filepath.Join(dir, "x.pdf")}, {"-f", filepath.Join(dir, "x.md")}} {
		_, stderr, code := e.tether(append(append([]string{"session", "report"}, args...), "--kubeconfig", e.kubeconfig, "-n", e.ns)...)
		if code != 2 {
			t.Errorf("session report %v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	_, stderr, code := e.tether("session", "report", "-f", filepath.Join(dir, "x.md"), "--kubeconfig", e.kubeconfig, "-n", e.ns+"-nope")
	if code != 2 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("session report in an unknown namespace: exit %d (%s), want 2", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.md")); !os.IsNotExist(err) {
		t.Errorf("a report was written without a session: %v", err)
	}
}

// openInChromium loads the report in headless Chromium: the DOM holds the
// diagram, the console logs no error, and a screenshot shows it drawn.
func (e *env) openInChromium(chromium, file string) {
	e.t.Helper()
	run := func(args ...string) (string, string) {
		e.t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args = append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--user-data-dir=" + e.t.TempDir(),
			"--enable-logging=stderr", "--v=0"}, args...)
		cmd := exec.CommandContext(ctx, chromium, append(args, "file://"+file)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			e.t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	dom, logs := run("--dump-dom")
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg" id="path-diagram"`, `id="node-n0"`, `id="node-n1"`, `id="edge-0"`, "<h2 id=\"reproduction\">"} {
		if !strings.Contains(dom, want) {
			e.t.Errorf("the DOM Chromium built lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<img") {
		e.t.Error("the DOM holds an element from the recording")
	}
	// Chromium logs every console message as "INFO:CONSOLE" (an uncaught
	// error, a blocked script or fetch: "... violates the following Content
	// Security Policy directive"); a clean report logs none.
	for _, bad := range []string{"Uncaught", ":CONSOLE", "Content Security Policy", "Refused to"} {
		if strings.Contains(logs, bad) {
			e.t.Errorf("Chromium logged %q:\n%s", bad, logs)
		}
	}
	shot := filepath.Join(e.t.TempDir(), "report.png")
	_, logs = run("--screenshot="+shot, "--window-size=1280,2600", "--hide-scrollbars")
	b, err := os.ReadFile(shot)
	if err != nil {
		e.t.Fatalf("no screenshot: %v\n%s", err, logs)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		e.t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	// The diagram's boxes are filled green (#e6f4ea), amber or red: count
	// the pixels of those fills, which nothing else on the page uses.
	if n := diagramPixels(img); n < 2000 {
		e.t.Errorf("the screenshot (%d bytes) shows %d pixels of the diagram's boxes: not drawn", len(b), n)
	} else {
		e.t.Logf("screenshot %d bytes, %d pixels of diagram boxes", len(b), n)
	}
}

func diagramPixels(img image.Image) int {
	fills := [][3]uint32{{0xe6, 0xf4, 0xea}, {0xfe, 0xf7, 0xe0}, {0xfc, 0xe8, 0xe6}}
	n := 0
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			for _, f := range fills {
				if absDiff(cr>>8, f[0]) <= 2 && absDiff(cg>>8, f[1]) <= 2 && absDiff(cb>>8, f[2]) <= 2 {
					n++
				}
			}
		}
	}
	return n
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}
