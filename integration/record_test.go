//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// listedRow is a row of `tether requests list -o json`.
type listedRow struct {
	ID, Pod, Method, Path, Destination, Error string
	Status                                    int
	ResponseBytes                             int64
}

func (e *env) requestsList(args ...string) []listedRow {
	e.t.Helper()
	out := e.mustTether(append([]string{"requests", "list", "orders", "-o", "json"}, args...)...)
	var rows []listedRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		e.t.Fatalf("requests list -o json: %v\n%s", err, out)
	}
	return rows
}

func (e *env) recorderStats() daemon.PodRecording {
	e.t.Helper()
	out := e.mustTether("requests", "stats", "orders", "-o", "json")
	var pods []daemon.PodRecording
	if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods) != 1 {
		e.t.Fatalf("requests stats -o json: %v\n%s", err, out)
	}
	return pods[0]
}

// TestRecordListShow records the demo app, sends known requests from a
// client pod, and finds them with list, its filters, and show.
func TestRecordListShow(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http", "--redact", "password")
	orders := e.firstPod("orders")

	base := "http://orders." + e.ns + ".svc.cluster.local"
	for _, cmd := range [][]string{
		{"get", base + "/orders/7", "Authorization: Bearer s3cret", "X-Request-Id: abc"},
		{"post", base + "/orders/42/checkout"},
		{"get", base + "/orders/9"},
		{"post", base + "/orders", `{"item":"kettle","qty":1,"password":"hunter2"}`},
	} {
		e.exec(client, append([]string{"/tether-demo"}, cmd...)...)
	}
	rows := e.requestsList()
	want := []struct {
		method, path string
		status       int
	}{{"GET", "/orders/7", 200}, {"POST", "/orders/42/checkout", 500}, {"GET", "/orders/9", 404}, {"POST", "/orders", 201}}
	if len(rows) != len(want) {
		t.Fatalf("listed %d requests, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.Method != w.method || r.Path != w.path || r.Status != w.status || r.Pod != orders || r.Destination != recording.ToApp || r.ResponseBytes == 0 {
			t.Errorf("row %d: %+v, want %s %s -> %d from pod %s to the app", i, r, w.method, w.path, w.status, orders)
		}
	}
	failing := e.requestsList("--status", "5xx")
	if len(failing) != 1 || failing[0].Path != "/orders/42/checkout" {
		t.Errorf("--status 5xx: %+v", failing)
	}
	if got := e.requestsList("--method", "post", "--path", "/orders/4"); len(got) != 1 || got[0].Status != 500 {
		t.Errorf("--method post --path /orders/4: %+v", got)
	}
	if got := e.requestsList("--limit", "1"); len(got) != 1 || got[0].Path != "/orders" {
		t.Errorf("--limit 1 must keep the newest: %+v", got)
	}

	// show: the secret header and the named JSON field are redacted.
	var first recording.Exchange
	if err := json.Unmarshal([]byte(e.mustTether("requests", "show", "orders", rows[0].ID, "-o", "json")), &first); err != nil {
		t.Fatal(err)
	}
	if first.Request.Header.Get("Authorization") != recording.Redacted || first.Request.Header.Get("X-Request-Id") != "abc" {
		t.Errorf("recorded request headers: %v", first.Request.Header)
	}
	text := e.mustTether("requests", "show", "orders", rows[3].ID)
	if !strings.Contains(text, `"password": "[REDACTED]"`) || strings.Contains(text, "hunter2") || !strings.Contains(text, `"item": "kettle"`) {
		t.Errorf("show of the POST does not redact the JSON field:\n%s", text)
	}

	// Bad input: a bad filter and an unknown id are user errors.
	if _, stderr, code := e.tether("requests", "list", "orders", "--status", "6xx", "-n", e.ns); code != 2 || !strings.Contains(stderr, "5xx") {
		t.Errorf("--status 6xx: exit %d, %s", code, stderr)
	}
	if _, stderr, code := e.tether("requests", "show", "orders", "999", "-n", e.ns); code != 2 || !strings.Contains(stderr, "no recorded exchange") {
		t.Errorf("show 999: exit %d, %s", code, stderr)
	}
}

// TestRecordingIsTransparent sends the same raw bytes, well-formed and not,
// through the recording agent and straight to the app's port: the caller
// must see the same answer, and the agent must keep serving.
func TestRecordingIsTransparent(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http", "--no-redact")
	// --no-redact shows in status, and reading the records warns.
	var st struct{ Daemon daemon.Status }
	if err := json.Unmarshal([]byte(e.mustTether("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range st.Daemon.Agents {
		if a.Namespace == e.ns && a.Workload == "deployment/orders" {
			found = a.Recording && a.RedactionOff
		}
	}
	if !found {
		t.Errorf("status does not show orders recording with redaction off: %+v", st.Daemon.Agents)
	}
	if _, stderr, _ := e.tether("requests", "list", "orders", "-n", e.ns); !strings.Contains(stderr, "redaction OFF") {
		t.Errorf("requests list does not warn about --no-redact: %q", stderr)
	}
	pod, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), e.firstPod("orders"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viaAgent := "orders." + e.ns + ".svc.cluster.local:80"
	direct := pod.Status.PodIP + ":8080"
	date := regexp.MustCompile(`(?m)^Date: .*\r\n`)
	for _, tc := range []struct{ name, text string }{
		{"keep-alive GETs", `GET /orders/7 HTTP/1.1\r\nHost: orders\r\n\r\nGET /orders/9 HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n`},
		{"chunked POST", `POST /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`},
		{"malformed request line", `GET /orders/7 HTTP/9.9\r\nHost: o\r\n\r\n`},
		{"half a request", `POST /upload HTTP/1.1\r\nHost: o\r\nContent-Length: 100\r\n\r\nonly part`},
		{"binary garbage", `\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\x00\xff`},
	} {
		a, okA := e.exec(client, "/tether-demo", "send", viaAgent, tc.text)
		b, okB := e.exec(client, "/tether-demo", "send", direct, tc.text)
		a, b = date.ReplaceAllString(a, ""), date.ReplaceAllString(b, "")
		if okA != okB || a != b {
			t.Errorf("%s: through the agent (ok %v):\n%q\nstraight to the app (ok %v):\n%q", tc.name, okA, a, okB, b)
		}
	}
	if out, ok := e.exec(client, "/tether-demo", "get", "http://"+viaAgent+"/orders/7"); !ok || !strings.Contains(out, "200 OK") {
		t.Fatalf("the agent stopped serving: %s", out)
	}
	rs := e.recorderStats().Stats
	if rs.NotHTTP+rs.Malformed == 0 || rs.Exchanges < 4 || !rs.RedactionOff {
		t.Errorf("recorder stats %+v: want the garbage counted as not HTTP, the real exchanges recorded, redaction off", rs)
	}
}

// TestRecordingBudget floods the agent with large bodies under a small
// budget: memory stays within it, the oldest exchanges go, and a 5 GiB
// upload is streamed through whole while only its cap is kept.
func TestRecordingBudget(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http", "--budget", "1Mi", "--body-cap", "256Ki")
	base := "http://orders." + e.ns + ".svc.cluster.local"
	for i := range 8 {
		if out, ok := e.exec(client, "/tether-demo", "upload", base, fmt.Sprint(1<<20)); !ok || !strings.Contains(out, "status 200") {
			t.Fatalf("upload %d: %s", i, out)
		}
	}
	st := e.recorderStats().Stats
	if st.StoredBytes+st.InflightBytes > st.BudgetBytes || st.BudgetBytes != 1<<20 || st.Evicted == 0 || st.Exchanges != 8 {
		t.Fatalf("after 8 uploads of 1 MiB: %+v; want within the 1 MiB budget, some evicted", st)
	}
	rows := e.requestsList()
	if len(rows) == 0 || len(rows) != int(st.Held) || !strings.HasSuffix(rows[len(rows)-1].ID, ".8") || strings.HasSuffix(rows[0].ID, ".1") {
		t.Errorf("held %+v: the newest must be kept and the oldest dropped", rows)
	}

	const big = 5 << 30
	out, ok := e.exec(client, "/tether-demo", "upload", base, fmt.Sprint(big))
	sums := regexp.MustCompile(`[0-9a-f]{64}`).FindAllString(out, -1)
	if !ok || len(sums) != 2 || sums[0] != sums[1] || !strings.Contains(out, fmt.Sprintf(`"bytes": %d`, big)) {
		t.Fatalf("5 GiB upload through the recording agent: %s", out)
	}
	var ex recording.Exchange
	last := e.requestsList("--limit", "1")[0]
	if err := json.Unmarshal([]byte(e.mustTether("requests", "show", "orders", last.ID, "-o", "json")), &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Request.BodySize != big || !ex.Request.Truncated || len(ex.Request.Body) > 256<<10 {
		t.Errorf("recorded the 5 GiB upload as size %d, kept %d, truncated %v", ex.Request.BodySize, len(ex.Request.Body), ex.Request.Truncated)
	}
	if st := e.recorderStats().Stats; st.StoredBytes+st.InflightBytes > st.BudgetBytes {
		t.Errorf("budget broken after the 5 GiB upload: %+v", st)
	}
	// The agent's memory, as the kubelet measures it: the 1 MiB budget, the
	// 24 MiB the agent allows itself beyond it, and its binary's pages.
	ws := e.workingSet(e.firstPod("orders"), "tether-agent")
	t.Logf("agent working set after the flood and the 5 GiB upload: %.1f MiB", float64(ws)/(1<<20))
	if ws > 48<<20 {
		t.Errorf("agent working set %d MiB with a 1 MiB budget", ws>>20)
	}
}

// workingSet reads a container's working set from the kubelet's stats,
// waiting for a sample taken after this call (the kubelet samples every
// few seconds).
func (e *env) workingSet(pod, container string) int64 {
	e.t.Helper()
	ctx := context.Background()
	after := time.Now()
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		// The stats of the kubelet of the pod's node (of two, on a two-node cluster).
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil || p.Spec.NodeName == "" {
			continue
		}
		raw, err := e.cs.CoreV1().RESTClient().Get().Resource("nodes").Name(p.Spec.NodeName).SubResource("proxy", "stats", "summary").DoRaw(ctx)
		if err != nil {
			continue
		}
		var summary struct {
			Pods []struct {
				PodRef     struct{ Name, Namespace string }
				Containers []struct {
					Name   string
					Memory struct {
						Time            time.Time `json:"time"`
						WorkingSetBytes int64     `json:"workingSetBytes"`
					}
				}
			}
		}
		if json.Unmarshal(raw, &summary) != nil {
			continue
		}
		for _, p := range summary.Pods {
			if p.PodRef.Namespace != e.ns || p.PodRef.Name != pod {
				continue
			}
			for _, c := range p.Containers {
				if c.Name == container && c.Memory.Time.After(after) && c.Memory.WorkingSetBytes > 0 {
					return c.Memory.WorkingSetBytes
				}
			}
		}
	}
	e.t.Fatalf("no memory figure from the kubelet for %s/%s", pod, container)
	return 0
}
