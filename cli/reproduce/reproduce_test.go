package reproduce

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

func TestNewCmdReproduce(t *testing.T) {
	type flags struct {
		Workload, To, From string
		Refs, Expect       []string
		Count              int
		Status             string
	}
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr string
	}{
		{name: "filters", args: []string{"orders", "--status", "5xx", "--to", "cluster", "--expect", "status=5xx", "--expect", "latency>1s"},
			want: flags{Workload: "orders", Refs: []string{}, To: "cluster", Expect: []string{"status=5xx", "latency>1s"}, Count: 10, Status: "5xx"}},
		{name: "ids, count", args: []string{"orders", "x2x.17", "--to", "local:8080", "--expect", "json:.error=out of stock", "--count", "20"},
			want: flags{Workload: "orders", Refs: []string{"x2x.17"}, To: "local:8080", Expect: []string{"json:.error=out of stock"}, Count: 20}},
		{name: "file", args: []string{"--from", "f.json", "--to", "http://localhost:8080", "--expect", "error"},
			want: flags{From: "f.json", To: "http://localhost:8080", Expect: []string{"error"}, Count: 10}},
		{name: "no expect", args: []string{"orders", "--to", "cluster"}, wantErr: "say what the failure looks like"},
		{name: "bad expect", args: []string{"orders", "--to", "cluster", "--expect", "status=abc"}, wantErr: `--expect "status=abc"`},
		{name: "no to", args: []string{"orders", "--expect", "status=500"}, wantErr: "--to is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *ReproduceOptions
			cmd := NewCmdReproduce(cmdtest.Factory(t, streams), func(_ context.Context, o *ReproduceOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flags{got.Workload, got.To, got.From, got.Refs, got.Expect, got.Count, got.Filter.Status}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := ReproduceOptions{Workload: "orders", To: "cluster", Expect: []string{"status=500"}, Count: 10, Timeout: time.Second}
	tests := []struct {
		name string
		edit func(*ReproduceOptions)
		want string
	}{
		{"ok", func(*ReproduceOptions) {}, ""},
		{"nothing named", func(o *ReproduceOptions) { o.Workload = "" }, "say what to send"},
		{"cluster without workload", func(o *ReproduceOptions) { o.Workload, o.From = "", "f.json" }, "--to cluster needs the WORKLOAD"},
		{"file and ids", func(o *ReproduceOptions) { o.From, o.Refs = "f.json", []string{"x2x.1"} }, "give no IDs with it"},
		{"zero count", func(o *ReproduceOptions) { o.Count = 0 }, "--count must be at least 1"},
		{"bad header", func(o *ReproduceOptions) { o.Headers = []string{"nocolon"} }, `--header "nocolon"`},
		{"bad to", func(o *ReproduceOptions) { o.To = "ftp://x" }, ""},
		{"latency equal", func(o *ReproduceOptions) { o.Expect = []string{"latency=1s"} }, "a latency takes >"},
		{"no timeout", func(o *ReproduceOptions) { o.Timeout = 0 }, "--timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.Validate()
			switch {
			case tt.name == "bad to":
				if err == nil {
					t.Error("ftp://x accepted")
				}
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "":
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
			}
		})
	}
}

// fakeReplay answers round r of each request with status(r).
func fakeReplay(t *testing.T, got *daemon.ReplayRequest, status func(round int) int) *cmdtest.FakeService {
	return &cmdtest.FakeService{ReplayFunc: func(_ context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
		*got = req
		sum := replay.Summary{ByStatus: map[string]int{}}
		for round := 1; round <= req.Options.Count; round++ {
			for i, e := range req.Exchanges {
				s := status(round)
				r := replay.Result{Ref: req.Refs[i], Round: round, Method: e.Request.Method, Target: e.Request.Target, Status: s, Latency: time.Millisecond}
				if req.Options.KeepBody {
					r.Body = []byte(`{"error":"out of stock"}`)
				}
				if err := emit(r); err != nil {
					return sum, err
				}
				sum.Sent++
			}
		}
		return sum, nil
	}}
}

func run(t *testing.T, fake *cmdtest.FakeService, output string, expect ...string) (string, error) {
	t.Helper()
	streams, out, _ := cmdtest.Streams()
	o := &ReproduceOptions{IOStreams: streams, From: "f.json", To: "http://localhost:8080", Count: 10, Expect: expect, Timeout: time.Second,
		Output: output, DaemonService: cmdtest.ServeDaemon(t, fake), Now: time.Now,
		ReadFile: func(string) ([]*recording.Exchange, error) {
			return []*recording.Exchange{{ID: 17, Pod: "orders-x2x", Request: recording.Message{Method: "GET", Target: "/orders/7"}}}, nil
		}}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	err := o.Run(context.Background())
	return out.String(), err
}

func TestRunCounts(t *testing.T) {
	var req daemon.ReplayRequest
	// The failing code: every round answers 500.
	out, err := run(t, fakeReplay(t, &req, func(int) int { return 500 }), "", "status=5xx")
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "the failure recurred in 10 of 10 rounds")
	if !strings.Contains(out, "GET /orders/7  reproduced 10/10  (10 x 500)") || !strings.Contains(out, "the failure recurred in 10 of 10 rounds (100%): expect status=5xx") {
		t.Errorf("output:\n%s", out)
	}
	if req.Options.Count != 10 || req.Options.KeepBody || req.To != "http://localhost:8080" {
		t.Errorf("request %+v", req.Options)
	}

	// Fixed: no round fails; exit 0.
	out, err = run(t, fakeReplay(t, &req, func(int) int { return 200 }), "", "status=5xx")
	if err != nil || !strings.Contains(out, "the failure did not recur in 0 of 10 rounds (0%)") {
		t.Errorf("fixed: %v\n%s", err, out)
	}

	// Flaky, with a JSON condition: the body is asked for; -o json.
	out, err = run(t, fakeReplay(t, &req, func(r int) int { return map[bool]int{true: 500, false: 200}[r%3 == 0] }), "json",
		"status=500", "json:.error=out of stock")
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "the failure recurred in 3 of 10 rounds")
	if !req.Options.KeepBody {
		t.Error("a json: condition did not ask for the bodies")
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	want := Report{Expect: []string{"status=500", "json:.error=out of stock"}, Rounds: 10, Reproduced: 3,
		Requests: []RequestReport{{Ref: rep.Requests[0].Ref, Method: "GET", Target: "/orders/7", Sent: 10, Reproduced: 3, ByStatus: map[string]int{"200": 7, "500": 3}}},
		Summary: replay.Summary{Sent: 10, ByStatus: map[string]int{}}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}
