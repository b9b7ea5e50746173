package requests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// parse runs a subcommand's argv through Complete and Validate and
// returns the options its runF got.
func parse[O any](t *testing.T, newCmd func(*cmdutil.Factory, func(context.Context, *O) error) *cobra.Command, args ...string) (*O, error) {
	t.Helper()
	streams, _, _ := cmdtest.Streams()
	var got *O
	cmd := newCmd(cmdtest.Factory(t, streams), func(_ context.Context, o *O) error { got = o; return nil })
	return got, cmdtest.Exec(cmd, args...)
}

func TestNewCmdList(t *testing.T) {
	o, err := parse(t, NewCmdList, "deploy/orders", "--status", "5xx", "--method", "POST", "--path", "/orders", "--since", "10m", "--limit", "20", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	want := FilterFlags{Status: "5xx", Method: "POST", Path: "/orders", Since: 10 * time.Minute, Limit: 20}
	if diff := cmp.Diff(want, o.FilterFlags); diff != "" || o.Workload != "deploy/orders" || o.Ns != "shop" || o.Output != "json" || o.Now == nil {
		t.Errorf("workload %q ns %q output %q, filter (-want +got):\n%s", o.Workload, o.Ns, o.Output, diff)
	}
	_, err = parse(t, NewCmdList, "orders", "--status", "teapot")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `--status "teapot": write a code such as 404 or a class such as 5xx`)
	_, err = parse(t, NewCmdList)
	cmdtest.WantError(t, err, cmdutil.ExitUser, "accepts 1 arg(s), received 0: list WORKLOAD")
}

func TestNewCmdShow(t *testing.T) {
	o, err := parse(t, NewCmdShow, "orders", "x2x.17", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o.Workload != "orders" || o.Ref != "x2x.17" || o.Ns != "shop" || o.Output != "yaml" {
		t.Errorf("got %+v", o)
	}
	_, err = parse(t, NewCmdShow, "orders", "x2x")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `"x2x" is not an exchange name: write it as `+"`tether requests list`"+` shows it, e.g. x2x.17`)
}

func TestNewCmdStats(t *testing.T) {
	o, err := parse(t, NewCmdStats, "orders")
	if err != nil || o.Workload != "orders" || o.Ns != "shop" {
		t.Errorf("%v %+v", err, o)
	}
}

func TestNewCmdExport(t *testing.T) {
	o, err := parse(t, NewCmdExport, "orders", "--format", "curl", "--base", "http://localhost:3000", "--since", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if o.Format != "curl" || o.Base != "http://localhost:3000" || o.File != "-" || o.Since != time.Hour || o.Create == nil {
		t.Errorf("got %+v", o)
	}
	_, err = parse(t, NewCmdExport, "orders", "--format", "pcap")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `--format "pcap": choose har or curl`)
}

func TestNewCmdSave(t *testing.T) {
	o, err := parse(t, NewCmdSave, "orders", "incident.json", "--status", "500")
	if err != nil {
		t.Fatal(err)
	}
	if o.Workload != "orders" || o.File != "incident.json" || o.Status != "500" || o.Create == nil {
		t.Errorf("got %+v", o)
	}
	_, err = parse(t, NewCmdSave, "orders")
	cmdtest.WantError(t, err, cmdutil.ExitUser, "accepts 2 arg(s), received 1: save WORKLOAD FILE")
}

func TestRequestsValidate(t *testing.T) {
	w := WorkloadOptions{Workload: "orders"}
	tests := []struct {
		name string
		o    interface{ Validate() error }
		want string
	}{
		{"list", &ListOptions{WorkloadOptions: w, FilterFlags: FilterFlags{Status: "404", Since: time.Minute, Limit: 5}}, ""},
		{"blank workload", &ListOptions{}, "name the workload whose agents recorded, e.g. deploy/orders"},
		{"bad output", &StatsOptions{WorkloadOptions: WorkloadOptions{Workload: "orders", Output: "csv"}}, `unknown output format "csv"`},
		{"bad status", &ListOptions{WorkloadOptions: w, FilterFlags: FilterFlags{Status: "6xx"}}, `--status "6xx": write a code such as 404 or a class such as 5xx`},
		{"negative since", &ListOptions{WorkloadOptions: w, FilterFlags: FilterFlags{Since: -time.Minute}}, "--since must be a positive duration such as 10m"},
		{"negative limit", &ExportOptions{WorkloadOptions: w, Format: "har", FilterFlags: FilterFlags{Limit: -1}}, "--limit must not be negative"},
		{"bad ref", &ShowOptions{WorkloadOptions: w, Ref: "x2x.0"}, `"x2x.0" is not an exchange name`},
		{"bad format", &ExportOptions{WorkloadOptions: w, Format: "xml"}, `--format "xml": choose har or curl`},
		{"save without file", &SaveOptions{WorkloadOptions: w}, "name the file to save to, e.g. tether requests save orders incident.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
			}
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func exchanges() []*recording.Exchange {
	return []*recording.Exchange{
		{ID: 17, Time: t0, Pod: "orders-7d9c-x2x", Source: "10.42.0.9:51000", Destination: "app", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "GET", Target: "/orders/7", Header: http.Header{"Accept": {"application/json"}}},
			Response: &recording.Message{Status: 200, Reason: "OK", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"id":7}`), BodySize: 8},
			Wait:     3 * time.Millisecond},
		{ID: 3, Time: t0.Add(time.Second), Pod: "orders-7d9c-q4z", Source: "10.42.0.9:51001", Destination: "laptop", Proto: "HTTP/1.1",
			Request: recording.Message{Method: "POST", Target: "/orders", Header: http.Header{}}, Error: "connection closed before the response"},
	}
}

// fake answers Requests with the exchanges its filter selects, warning
// about one pod, and keeps the last request.
func fake(got *daemon.RequestsRequest) *cmdtest.FakeService {
	return &cmdtest.FakeService{RequestsFunc: func(_ context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
		*got = req
		if req.Workload == "nope" {
			return nil, errdefs.NotFound("no workload nope in namespace shop")
		}
		for _, e := range exchanges() {
			if len(req.Filter.IDs) > 0 && req.Filter.IDs[0] != e.ID {
				continue
			}
			if err := emit(e); err != nil {
				return nil, err
			}
		}
		return []daemon.PodRecording{
			{Pod: "orders-7d9c-x2x", Stats: agent.RecordingStats{Held: 1, Exchanges: 5, Evicted: 4, StoredBytes: 2048, BudgetBytes: 64 << 20, RedactedNames: []string{"authorization"}}},
			{Pod: "orders-7d9c-zzz", Error: "agent not ready"},
		}, nil
	}}
}

func workload(t *testing.T, name, output string, got *daemon.RequestsRequest) (WorkloadOptions, *bytes.Buffer, *bytes.Buffer) {
	streams, out, errOut := cmdtest.Streams()
	return WorkloadOptions{IOStreams: streams, Workload: name, Output: output, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake(got))}, out, errOut
}

func now() time.Time { return t0.Add(time.Minute) }

func TestListRun(t *testing.T) {
	var req daemon.RequestsRequest
	w, out, errOut := workload(t, "orders", "", &req)
	o := &ListOptions{WorkloadOptions: w, FilterFlags: FilterFlags{Status: "2xx", Since: 10 * time.Minute, Limit: 50}, Now: now}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantReq := daemon.RequestsRequest{Namespace: "shop", Workload: "orders", WithoutBodies: true, Limit: 50,
		Filter: recording.Filter{Status: "2xx", Since: t0.Add(-9 * time.Minute)}}
	if diff := cmp.Diff(wantReq, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], "x2x.17 ") || !strings.Contains(lines[1], "/orders/7") ||
		!strings.HasPrefix(lines[2], "q4z.3 ") || !strings.Contains(lines[2], " - ") {
		t.Errorf("list:\n%s", out)
	}
	if errOut.String() != "warning: pod orders-7d9c-zzz: agent not ready\n" {
		t.Errorf("stderr %q", errOut)
	}

	w, out, _ = workload(t, "orders", "json", &req)
	o = &ListOptions{WorkloadOptions: w, Now: now}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rows []listed
	if err := json.Unmarshal([]byte(out.String()), &rows); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	want := []listed{
		{ID: "x2x.17", Time: t0, Pod: "orders-7d9c-x2x", Method: "GET", Path: "/orders/7", Status: 200, LatencyMs: 3, Size: 8, Destination: "app", Proto: "HTTP/1.1"},
		{ID: "q4z.3", Time: t0.Add(time.Second), Pod: "orders-7d9c-q4z", Method: "POST", Path: "/orders", Destination: "laptop", Proto: "HTTP/1.1", Error: "connection closed before the response"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

func TestShowRun(t *testing.T) {
	var req daemon.RequestsRequest
	w, out, _ := workload(t, "orders", "", &req)
	o := &ShowOptions{WorkloadOptions: w, Ref: "x2x.17"}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{17}, req.Filter.IDs); diff != "" {
		t.Errorf("ids asked (-want +got):\n%s", diff)
	}
	for _, want := range []string{"x2x.17  ", "\nGET /orders/7\nAccept: application/json\n", "\n200 OK\nContent-Type: application/json\n\n{\n  \"id\": 7\n}\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}

	w, out, _ = workload(t, "orders", "json", &req)
	o = &ShowOptions{WorkloadOptions: w, Ref: "17"}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var e recording.Exchange
	if err := json.Unmarshal([]byte(out.String()), &e); err != nil || e.ID != 17 || e.Response.Status != 200 {
		t.Errorf("-o json: %v\n%s", err, out)
	}

	w, _, _ = workload(t, "orders", "", &req)
	o = &ShowOptions{WorkloadOptions: w, Ref: "x2x.99"}
	cmdtest.WantError(t, o.Run(context.Background()), cmdutil.ExitUser, "no recorded exchange x2x.99 (it may have been evicted")
}

func TestStatsRun(t *testing.T) {
	var req daemon.RequestsRequest
	w, out, _ := workload(t, "orders", "", &req)
	if err := (&StatsOptions{WorkloadOptions: w}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `POD              HELD  RECORDED  EVICTED  MEMORY           NOT HTTP  LIMITED  UPGRADED  REDACTION
orders-7d9c-x2x  1     5         4        2.0Ki of 64.0Mi  0         0        0         on: authorization + look-alike names
orders-7d9c-zzz  agent not ready
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	w, out, _ = workload(t, "orders", "json", &req)
	if err := (&StatsOptions{WorkloadOptions: w}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var pods []daemon.PodRecording
	if err := json.Unmarshal([]byte(out.String()), &pods); err != nil || len(pods) != 2 || pods[0].Stats.Evicted != 4 {
		t.Errorf("-o json: %v\n%s", err, out)
	}
}

func TestExportAndSaveRun(t *testing.T) {
	dir := t.TempDir()
	var req daemon.RequestsRequest
	w, out, _ := workload(t, "orders", "", &req)
	exp := &ExportOptions{WorkloadOptions: w, Format: "curl", File: "-", Base: "http://localhost:3000", Now: now, Create: createAtomic}
	if err := exp.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "# x2x.17 GET /orders/7 -> 200\ncurl -g -X 'GET' --url 'http://localhost:3000/orders/7'") {
		t.Errorf("curl export:\n%s", out)
	}

	har := filepath.Join(dir, "x.har")
	w, _, errOut := workload(t, "orders", "", &req)
	exp = &ExportOptions{WorkloadOptions: w, Format: "har", File: har, Now: now, Create: createAtomic}
	if err := exp.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(har); err != nil || len(got) != 2 || !strings.Contains(errOut.String(), "wrote 2 requests to "+har) {
		t.Errorf("HAR export read back: %v, %d exchanges; stderr %q", err, len(got), errOut)
	}

	saved := filepath.Join(dir, "incident.json")
	w, _, errOut = workload(t, "orders", "", &req)
	save := &SaveOptions{WorkloadOptions: w, File: saved, Now: now, Create: createAtomic}
	if err := save.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(saved)
	if err != nil || len(got) != 2 || string(got[0].Response.Body) != `{"id":7}` || !strings.Contains(errOut.String(), "saved 2 requests to ") {
		t.Errorf("save read back: %v, %+v; stderr %q", err, got, errOut)
	}
}

func TestRequestsRunErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.json")
	var req daemon.RequestsRequest
	w, _, _ := workload(t, "nope", "", &req)
	save := &SaveOptions{WorkloadOptions: w, File: path, Now: now, Create: createAtomic}
	cmdtest.WantError(t, save.Run(context.Background()), cmdutil.ExitUser, "no workload nope in namespace shop")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed save left %s: %v", path, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 0 {
		t.Errorf("a failed save left files: %v", entries)
	}

	w, _, _ = workload(t, "orders", "", &req)
	w.DaemonService = cmdtest.ServeDaemon(t, &cmdtest.FakeService{RequestsFunc: func(context.Context, daemon.RequestsRequest, func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
		return nil, errors.New("agent tunnel broke")
	}})
	cmdtest.WantError(t, (&ListOptions{WorkloadOptions: w, Now: now}).Run(context.Background()), cmdutil.ExitInternal, "agent tunnel broke (details: `tether logs`)")
}
