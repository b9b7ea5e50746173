package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

func TestReplayValidate(t *testing.T) {
	ok := func() ReplayOptions {
		return ReplayOptions{Workload: "orders", Refs: []string{"x2x.1"}, To: "local:8080", Count: 1, Conc: 1, Timeout: time.Second}
	}
	tests := []struct {
		name string
		edit func(*ReplayOptions)
		want string
	}{
		{"valid", func(*ReplayOptions) {}, ""},
		{"no --to", func(o *ReplayOptions) { o.To = "" }, "--to is required"},
		{"bad --to", func(o *ReplayOptions) { o.To = "ftp://x" }, "--to"},
		{"bad port", func(o *ReplayOptions) { o.To = "local:0" }, "local:PORT"},
		{"nothing selected", func(o *ReplayOptions) { o.Workload, o.Refs = "", nil }, "--from FILE"},
		{"ids with --from", func(o *ReplayOptions) { o.From = "f.json" }, "no IDs"},
		{"cluster without workload", func(o *ReplayOptions) { o.Workload, o.Refs, o.From, o.To = "", nil, "f.har", "cluster" }, "needs the WORKLOAD"},
		{"rate and speed", func(o *ReplayOptions) { o.Rate, o.Speed = "5/s", "2x" }, "exclude"},
		{"bad rate", func(o *ReplayOptions) { o.Rate = "fast" }, "--rate"},
		{"bad speed", func(o *ReplayOptions) { o.Speed = "-1x" }, "--speed"},
		{"zero count", func(o *ReplayOptions) { o.Count = 0 }, "at least 1"},
		{"bad header", func(o *ReplayOptions) { o.Headers = []string{"NoColon"} }, `--header "NoColon": write "Name: value"`},
		{"bad id", func(o *ReplayOptions) { o.Refs = []string{"x2x"} }, `"x2x" is not an exchange name`},
		{"zero timeout", func(o *ReplayOptions) { o.Timeout = 0 }, "--timeout must be positive, e.g. 30s"},
		{"bad status filter", func(o *ReplayOptions) { o.Filter.Status = "9xx" }, `--status "9xx": write a code such as 404 or a class such as 5xx`},
		{"negative since", func(o *ReplayOptions) { o.Filter.Since = -time.Minute }, "--since must be a positive duration such as 10m"},
		{"bad output", func(o *ReplayOptions) { o.Output = "xml" }, `unknown output format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		})
	}
}

func TestNewCmdReplay(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(*ReplayOptions) bool
		wantErr string
	}{
		{name: "ids to local", args: []string{"orders", "x2x.17", "q4z.3", "--to", "local"}, check: func(o *ReplayOptions) bool {
			return o.Workload == "orders" && cmp.Equal(o.Refs, []string{"x2x.17", "q4z.3"}) && o.To == "local" && o.Ns == "shop" &&
				o.Count == 1 && o.Conc == 1 && o.Timeout == 30*time.Second
		}},
		{name: "filter, pace, diff", args: []string{"orders", "--status", "5xx", "--since", "10m", "--limit", "5", "--to", "cluster", "--rate", "50/s",
			"--count", "3", "--concurrency", "2", "--diff", "--ignore-header", "x-trace", "--header", "Authorization: Bearer dev", "-o", "json"},
			check: func(o *ReplayOptions) bool {
				return o.Filter == requests.FilterFlags{Status: "5xx", Since: 10 * time.Minute, Limit: 5} && o.To == "cluster" && o.Rate == "50/s" &&
					o.Count == 3 && o.Conc == 2 && o.Diff && cmp.Equal(o.Ignore, []string{"x-trace"}) &&
					cmp.Equal(o.Headers, []string{"Authorization: Bearer dev"}) && o.Output == "json"
			}},
		{name: "from a file", args: []string{"--from", "incident.har", "--to", "http://localhost:8080", "--speed", "2x"}, check: func(o *ReplayOptions) bool {
			return o.From == "incident.har" && o.Workload == "" && o.Speed == "2x"
		}},
		{name: "no --to", args: []string{"orders", "x2x.17"}, wantErr: "--to is required: local, local:PORT, cluster, cluster:HOST:PORT, cluster:recorded, or a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *ReplayOptions
			cmd := NewCmdReplay(cmdtest.Factory(t, streams), func(_ context.Context, o *ReplayOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("options: %+v", got)
			}
		})
	}
}

func TestPrintResultEscapesControlCharacters(t *testing.T) {
	const esc = "\x1b]0;owned\x07\u009b2J\u202e"
	var out bytes.Buffer
	o := &ReplayOptions{IOStreams: genericiooptions.IOStreams{Out: &out}, Count: 2}
	for _, r := range []replay.Result{
		{Ref: "x2x.1" + esc, Method: "GET" + esc, Target: "/a\n" + esc, Status: 200,
			Diff: &replay.Diff{Status: "1 -> 2", Headers: []string{"X: " + esc}, Trailers: []string{"Grpc-Message: " + esc}, Body: []string{"$.a" + esc}, NotCompared: []string{esc}}},
		{Ref: "x2x.4", Method: "POST", Target: "/g", Status: 200, GRPCStatus: "5" + esc},
		{Ref: "x2x.2", Method: "GET", Target: "/", Error: "malformed " + esc},
		{Ref: "x2x.3", Method: "GET", Target: "/", Skipped: "skip " + esc},
	} {
		printResult(o, r)
	}
	for i, r := range out.String() {
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e') {
			t.Fatalf("output holds %U at byte %d:\n%q", r, i, out.String())
		}
	}
	if got := strings.Count(out.String(), "\n"); got != 9 {
		t.Errorf("%d lines, want 9:\n%s", got, out.String())
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func recorded() []*recording.Exchange {
	return []*recording.Exchange{
		{ID: 17, Time: t0, Pod: "orders-7d9c-x2x", Request: recording.Message{Method: "GET", Target: "/orders/7"}, Response: &recording.Message{Status: 200}},
		{ID: 18, Time: t0, Pod: "orders-7d9c-x2x", Request: recording.Message{Method: "POST", Target: "/orders"}, Response: &recording.Message{Status: 201}},
	}
}

// replayFake serves the recorded exchanges and replays them with the
// results given, keeping the requests it got.
type replayFake struct {
	requests daemon.RequestsRequest
	replay   daemon.ReplayRequest
	results  []replay.Result
	summary  replay.Summary
	err      error
}

func (f *replayFake) service() *cmdtest.FakeService {
	return &cmdtest.FakeService{
		RequestsFunc: func(_ context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
			f.requests = req
			for _, e := range recorded() {
				if err := emit(e); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		ReplayFunc: func(_ context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
			f.replay = req
			for _, r := range f.results {
				if err := emit(r); err != nil {
					return replay.Summary{}, err
				}
			}
			return f.summary, f.err
		},
	}
}

func runReplay(t *testing.T, f *replayFake, edit func(*ReplayOptions)) (string, error) {
	t.Helper()
	streams, out, _ := cmdtest.Streams()
	o := &ReplayOptions{IOStreams: streams, Workload: "orders", Refs: []string{"x2x.17"}, To: "local:8080", Count: 1, Conc: 1, Timeout: time.Second,
		Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, f.service()), Now: func() time.Time { return t0 }, ReadFile: requests.ReadFile}
	if edit != nil {
		edit(o)
	}
	if err := o.Validate(); err != nil {
		return "", err
	}
	err := o.Run(context.Background())
	return out.String(), err
}

func TestReplayRun(t *testing.T) {
	f := &replayFake{
		results: []replay.Result{{Ref: "x2x.17", Round: 1, Method: "GET", Target: "/orders/7", Status: 200, Latency: 1500 * time.Microsecond}},
		summary: replay.Summary{Sent: 1, ByStatus: map[string]int{"200": 1}, Elapsed: 2 * time.Millisecond, PerSecond: 500,
			P50: 1500 * time.Microsecond, P90: 1500 * time.Microsecond, P99: 1500 * time.Microsecond, Max: 1500 * time.Microsecond},
	}
	out, err := runReplay(t, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{17}, f.requests.Filter.IDs); diff != "" || f.requests.Namespace != "shop" {
		t.Errorf("requests read in %q (-want +got ids):\n%s", f.requests.Namespace, diff)
	}
	if len(f.replay.Exchanges) != 1 || f.replay.Exchanges[0].ID != 17 || !cmp.Equal(f.replay.Refs, []string{"x2x.17"}) ||
		f.replay.To != "local:8080" || f.replay.Namespace != "shop" || f.replay.Options.Timeout != time.Second {
		t.Errorf("replay request: %+v", f.replay)
	}
	want := "x2x.17  GET /orders/7  200  1.5ms\n\n1 sent (1 x 200) in 2ms, 500/s; latency p50 1.5ms, p90 1.5ms, p99 1.5ms, max 1.5ms\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}

	out, err = runReplay(t, f, func(o *ReplayOptions) { o.Output = "json" })
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var r replay.Result
	var sum replay.Summary
	if err := dec.Decode(&r); err != nil || r.Ref != "x2x.17" || r.Latency != 1500*time.Microsecond {
		t.Errorf("-o json result: %v %+v\n%s", err, r, out)
	}
	if err := dec.Decode(&sum); err != nil || sum.Sent != 1 {
		t.Errorf("-o json summary: %v %+v\n%s", err, sum, out)
	}
}

func TestReplayRunExitCodes(t *testing.T) {
	differs := &replayFake{
		results: []replay.Result{{Ref: "x2x.17", Round: 1, Method: "GET", Target: "/orders/7", Status: 500, Diff: &replay.Diff{Status: "200 -> 500"}}},
		summary: replay.Summary{Sent: 1, Differing: 1, ByStatus: map[string]int{"500": 1}},
	}
	out, err := runReplay(t, differs, func(o *ReplayOptions) { o.Diff = true })
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "1 of 1 answers differ from the recording")
	if !strings.Contains(out, "    status 200 -> 500\n") {
		t.Errorf("diff not shown:\n%s", out)
	}

	failed := &replayFake{results: []replay.Result{{Ref: "x2x.17", Round: 1, Method: "GET", Target: "/orders/7", Error: "connection refused"}},
		summary: replay.Summary{Errors: 1}}
	_, err = runReplay(t, failed, nil)
	cmdtest.WantError(t, err, cmdutil.ExitInternal, "1 of 1 requests failed")

	_, err = runReplay(t, &replayFake{}, func(o *ReplayOptions) { o.Refs = []string{"x2x.99"} })
	cmdtest.WantError(t, err, cmdutil.ExitUser, "no recorded exchange x2x.99")

	_, err = runReplay(t, &replayFake{err: errdefs.User("workload orders has no intercept: --to local needs one")}, nil)
	cmdtest.WantError(t, err, cmdutil.ExitUser, "workload orders has no intercept")
}
