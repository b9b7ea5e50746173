package reproduce

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

func parse(t *testing.T, args ...string) (*ReproduceOptions, error) {
	t.Helper()
	streams, _, _ := cmdtest.Streams()
	var got *ReproduceOptions
	cmd := NewCmdReproduce(cmdtest.Factory(t, streams), func(_ context.Context, o *ReproduceOptions) error { got = o; return nil })
	return got, cmdtest.Exec(cmd, args...)
}

func TestNewCmdReproduce(t *testing.T) {
	o, err := parse(t, "orders", "--status", "5xx", "--since", "10m", "--to", "cluster", "--expect", "status=500", "--expect", "json:$.error", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if o.Workload != "orders" || o.To != "cluster" || o.Count != 10 || o.Conc != 1 || o.Filter.Status != "5xx" || o.Filter.Since != 10*time.Minute ||
		!cmp.Equal(o.Expect, []string{"status=500", "json:$.error"}) || len(o.expect) != 2 || o.Output != "json" || o.Ns != "shop" {
		t.Errorf("got %+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"orders", "--to", "cluster", "--expect", "latency>soon"}, `--expect: "latency>soon": write latency>500ms, latency>=1s or latency<50ms`},
		{[]string{"orders", "--to", "cluster", "--expect", "slow"}, `--expect: "slow": expect status=..., grpc-status=..., latency>..., json:$.PATH[=VALUE], body~REGEX or error`},
		{[]string{"orders", "--to", "cluster", "--count", "0"}, "--count and --concurrency must be at least 1"},
		{[]string{"orders"}, "--to is required"},
		{[]string{"--to", "local:8080"}, "say what to replay: WORKLOAD with IDs or filters, or --from FILE"},
	} {
		_, err := parse(t, tc.args...)
		cmdtest.WantError(t, err, cmdutil.ExitUser, tc.want)
	}
}

// recorded: a checkout that failed and a listing that did not.
func recorded() []*recording.Exchange {
	return []*recording.Exchange{
		{ID: 17, Time: time.Unix(100, 0), Pod: "orders-7d9c-x2x", Destination: "app", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "POST", Target: "/orders/42/checkout", Header: http.Header{}},
			Response: &recording.Message{Status: 500, Header: http.Header{}}},
		{ID: 18, Time: time.Unix(101, 0), Pod: "orders-7d9c-x2x", Destination: "app", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "GET", Target: "/orders", Header: http.Header{}},
			Response: &recording.Message{Status: 200, Header: http.Header{}}},
		// An earlier run's replay of the checkout, recorded too: never
		// selected by a filter.
		{ID: 19, Time: time.Unix(102, 0), Pod: "orders-7d9c-x2x", Destination: "app", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "POST", Target: "/orders/42/checkout", Header: http.Header{"X-Tether-Replay": {"x2x.17"}}},
			Response: &recording.Message{Status: 500, Header: http.Header{}}},
	}
}

// fake replays the exchanges count times; the checkout answers with
// statuses[round-1] (the failure coming and going), the listing 200.
func fake(got *daemon.ReplayRequest, statuses []int) *cmdtest.FakeService {
	return &cmdtest.FakeService{
		RequestsFunc: func(_ context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
			for _, e := range recorded() {
				if req.Filter.Match(e) {
					if err := emit(e); err != nil {
						return nil, err
					}
				}
			}
			return nil, nil
		},
		ReplayFunc: func(_ context.Context, req daemon.ReplayRequest, emit func(replay.Result) error) (replay.Summary, error) {
			*got = req
			sum := replay.Summary{ByStatus: map[string]int{}}
			for round := 1; round <= req.Options.Count; round++ {
				for i, e := range req.Exchanges {
					r := replay.Result{Ref: req.Refs[i], Round: round, Method: e.Request.Method, Target: e.Request.Target, Status: 200}
					if e.Request.Method == "POST" {
						r.Status = statuses[round-1]
					}
					if r.Status == 0 {
						r.Error = "connection reset"
					}
					// The daemon decides with replay's own rules; here, the
					// recorded answer (ExpectRecorded) or the expectations.
					v := r.Error == "" && r.Status == e.Response.Status
					if len(req.Options.Expect) > 0 {
						v = true
						for _, x := range req.Options.Expect {
							v = v && x.Holds(replay.Answer{Status: r.Status, Error: r.Error, Body: []byte(`{"error":"x"}`)})
						}
					}
					r.Recurred = &v
					if err := emit(r); err != nil {
						return sum, err
					}
					sum.Sent++
				}
			}
			return sum, nil
		},
	}
}

func TestReproduceRun(t *testing.T) {
	var req daemon.ReplayRequest
	run := func(statuses []int, edit func(*ReproduceOptions)) (string, error) {
		t.Helper()
		streams, out, _ := cmdtest.Streams()
		o := &ReproduceOptions{}
		o.IOStreams, o.Workload, o.To, o.Count, o.Conc, o.Timeout, o.Ns = streams, "orders", "cluster", len(statuses), 1, time.Second, "shop"
		o.DaemonService, o.Now, o.ReadFile = cmdtest.ServeDaemon(t, fake(&req, statuses)), func() time.Time { return time.Unix(200, 0) }, requests.ReadFile
		if edit != nil {
			edit(o)
		}
		if err := o.Validate(); err != nil {
			return "", err
		}
		err := o.Run(context.Background())
		return out.String(), err
	}
	// The checkout fails in 3 of 4 rounds: exit 3 with the counts.
	out, err := run([]int{500, 500, 200, 500}, func(o *ReproduceOptions) { o.Filter.Status = "5xx" })
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "the failure recurred in 3 of 4 answers")
	if !req.Options.ExpectRecorded || len(req.Options.Expect) != 0 || req.Options.Count != 4 || len(req.Exchanges) != 1 {
		t.Errorf("replay asked: %+v", req.Options)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"failure: the recorded answer", "x2x.17  POST /orders/42/checkout  recurred 3/4  (1 x 200, 3 x 500)",
		"recurred in 3 of 4 answers (75%); latency p50 0s, p99 0s"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}

	// Fixed: never again, exit 0; the expectations go to the daemon as given.
	out, err = run([]int{200, 200}, func(o *ReproduceOptions) { o.Expect = []string{"status=5xx", "json:$.error"}; o.Output = "json" })
	if err != nil {
		t.Fatalf("fixed: %v", err)
	}
	if len(req.Options.Expect) != 2 || req.Options.Expect[0].String() != "status=5xx" || req.Options.ExpectRecorded {
		t.Errorf("expectations sent: %v, recorded %v", req.Options.Expect, req.Options.ExpectRecorded)
	}
	var tally Tally
	if err := json.Unmarshal([]byte(out), &tally); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if tally.Recurred != 0 || tally.Answers != 4 || len(tally.Requests) != 2 || tally.Requests[0].Seen["200"] != 2 {
		t.Errorf("-o json: %+v", tally)
	}

	// Nothing matches: a user error, nothing sent.
	_, err = run([]int{500}, func(o *ReproduceOptions) { o.Filter.Path = "/nope" })
	cmdtest.WantError(t, err, cmdutil.ExitUser, "nothing to reproduce: no recorded request matches")
}

// A run in a namespace with a session appends its counts to the session's
// log; without a session it logs nothing and says nothing.
func TestReproduceLogsToSession(t *testing.T) {
	var req daemon.ReplayRequest
	var logged []daemon.SessionLogRequest
	hasSession := true
	f := fake(&req, []int{500, 500})
	f.SessionLogFunc = func(_ context.Context, r daemon.SessionLogRequest) (daemon.SessionLog, error) {
		if !hasSession {
			return daemon.SessionLog{}, errdefs.New(errdefs.ErrUser, daemon.NoSessionReason, "namespace shop has no session")
		}
		logged = append(logged, r)
		return daemon.SessionLog{}, nil
	}
	run := func() string {
		streams, _, errOut := cmdtest.Streams()
		o := &ReproduceOptions{Expect: []string{"status=500"}}
		o.IOStreams, o.Workload, o.To, o.Count, o.Conc, o.Timeout, o.Ns = streams, "orders", "cluster", 2, 1, time.Second, "shop"
		o.Filter.Status = "5xx"
		o.DaemonService, o.Now, o.ReadFile = cmdtest.ServeDaemon(t, f), func() time.Time { return time.Unix(200, 0) }, requests.ReadFile
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		err := o.Run(context.Background())
		cmdtest.WantError(t, err, cmdutil.ExitFailed, "the failure recurred in 2 of 2 answers")
		return errOut.String()
	}
	errOut := run()
	want := []daemon.SessionLogRequest{{Namespace: "shop", Append: &daemon.SessionEvent{Kind: daemon.EventReproduce,
		Reproduce: &daemon.ReproduceRecord{Workload: "orders", To: "cluster", Expect: []string{"status=500"}, Count: 2, Recurred: 2, Answers: 2,
			Requests: []daemon.ReproduceCount{{Ref: "x2x.17", Method: "POST", Target: "/orders/42/checkout", Recurred: 2, Answers: 2}}}}}}
	if diff := cmp.Diff(want, logged); diff != "" {
		t.Errorf("logged (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut, "counts kept with the session in shop") {
		t.Errorf("stderr: %q", errOut)
	}
	hasSession = false
	if errOut := run(); strings.Contains(errOut, "session") {
		t.Errorf("without a session, stderr says: %q", errOut)
	}
}
