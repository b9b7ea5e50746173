package requests

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
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

func TestNewCmdCompare(t *testing.T) {
	o, err := parse(t, NewCmdCompare, "orders", "--path", "/orders", "--status", "2xx", "--ignore-header", "X-Request-Id", "--limit", "5", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if o.Workload != "orders" || o.Ns != "shop" || o.Output != "json" || o.Path != "/orders" || o.Status != "2xx" || o.Limit != 5 ||
		!cmp.Equal(o.Ignore, []string{"X-Request-Id"}) {
		t.Errorf("got %+v", o)
	}
	_, err = parse(t, NewCmdCompare, "orders", "--limit", "-1")
	cmdtest.WantError(t, err, cmdutil.ExitUser, "--limit must not be negative")
}

// mirrored: two requests the app answered and their copies, one answered
// alike by the laptop and one not; a copy whose original was evicted.
func mirrored() []*recording.Exchange {
	json := http.Header{"Content-Type": {"application/json"}}
	ex := func(id uint64, s int, dest, target string, status int, body string) *recording.Exchange {
		return &recording.Exchange{ID: id, Time: t0.Add(time.Duration(s) * time.Second), Pod: "orders-7d9c-x2x", Destination: dest, Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "GET", Target: target, Host: "orders", Header: http.Header{}},
			Response: &recording.Message{Status: status, Header: json, Body: []byte(body), BodySize: int64(len(body))}}
	}
	return []*recording.Exchange{
		ex(1, 0, recording.ToApp, "/orders/7", 200, `{"total":89}`),
		ex(2, 1, recording.ToApp, "/orders/8", 200, `{"total":12}`),
		ex(3, 2, recording.ToMirror, "/orders/7", 200, `{"total":89}`),
		ex(4, 3, recording.ToMirror, "/orders/8", 200, `{"total":12.5}`),
		ex(5, 4, recording.ToMirror, "/orders/1", 200, `{}`),
	}
}

func TestCompareRun(t *testing.T) {
	var req daemon.RequestsRequest
	serve := func(exs []*recording.Exchange) func(context.Context) (daemon.Service, func(), error) {
		return cmdtest.ServeDaemon(t, &cmdtest.FakeService{RequestsFunc: func(_ context.Context, r daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
			req = r
			for _, e := range exs {
				if err := emit(e); err != nil {
					return nil, err
				}
			}
			return []daemon.PodRecording{{Pod: "orders-7d9c-x2x"}}, nil
		}})
	}
	streams, out, _ := cmdtest.Streams()
	o := &CompareOptions{WorkloadOptions: WorkloadOptions{IOStreams: streams, Workload: "orders", Ns: "shop", DaemonService: serve(mirrored())},
		FilterFlags: FilterFlags{Status: "2xx", Path: "/orders"}, Now: now}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "1 of 2 answers from your laptop differ from the app's")
	if diff := cmp.Diff(daemon.RequestsRequest{Namespace: "shop", Workload: "orders", Filter: recording.Filter{PathPrefix: "/orders"}}, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "x2x.1 ") || !strings.HasSuffix(lines[1], " same") ||
		!strings.HasPrefix(lines[2], "x2x.2 ") || !strings.HasSuffix(lines[2], "$.total: 12 -> 12.5") ||
		lines[3] != "2 compared: 1 the same, 1 differ, 0 not compared; 1 copies without the app's exchange (evicted)" {
		t.Errorf("text:\n%s", out)
	}

	streams, out, _ = cmdtest.Streams()
	o = &CompareOptions{WorkloadOptions: WorkloadOptions{IOStreams: streams, Workload: "orders", Ns: "shop", Output: "json", DaemonService: serve(mirrored()[:4])},
		FilterFlags: FilterFlags{Limit: 1}, Now: now}
	cmdtest.WantError(t, o.Run(context.Background()), cmdutil.ExitFailed, "1 of 1 answers from your laptop differ from the app's")
	var got comparison
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if len(got.Pairs) != 1 || got.Pairs[0].App != "x2x.2" || got.Pairs[0].Mirror != "x2x.4" || !got.Pairs[0].Differs ||
		got.Differing != 1 || got.Same != 0 || len(got.Unpaired) != 0 {
		t.Errorf("-o json: %+v", got)
	}

	// Only the answers that match: exit 0. Nothing mirrored: say how to
	// start a mirror.
	streams, _, _ = cmdtest.Streams()
	o = &CompareOptions{WorkloadOptions: WorkloadOptions{IOStreams: streams, Workload: "orders", Ns: "shop", DaemonService: serve(mirrored()[:3])}, Now: now}
	if err := o.Run(context.Background()); err != nil {
		t.Errorf("all answers alike: %v", err)
	}
	streams, _, _ = cmdtest.Streams()
	o = &CompareOptions{WorkloadOptions: WorkloadOptions{IOStreams: streams, Workload: "orders", Ns: "shop", DaemonService: serve(mirrored()[:2])}, Now: now}
	cmdtest.WantError(t, o.Run(context.Background()), cmdutil.ExitUser,
		"no mirrored copies recorded for orders: start a mirror with `tether intercept orders --port PORT --mirror` and let requests come in")
}
