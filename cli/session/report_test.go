package session

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

func TestNewCmdReport(t *testing.T) {
	type flags struct {
		Workload, File, Format, Status, Ns string
		Trace                              []string
	}
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr string
	}{
		{name: "markdown", args: []string{"-f", "r.md"}, want: flags{File: "r.md", Format: "md", Ns: "shop"}},
		{name: "html, workload, trace, filter", args: []string{"orders", "-f", "out/R.HTML", "--trace", "deploy/client,svc/orders", "--status", "503"},
			want: flags{Workload: "orders", File: "out/R.HTML", Format: "html", Status: "503", Ns: "shop", Trace: []string{"deploy/client", "svc/orders"}}},
		{name: "stdout with a format", args: []string{"-f", "-", "--format", "md"}, want: flags{File: "-", Format: "md", Ns: "shop"}},
		{name: "no file", args: nil, wantErr: "name the report's file with -f FILE.md"},
		{name: "unknown extension", args: []string{"-f", "r.pdf"}, wantErr: "-f r.pdf: end the name in .md or .html, or say --format md|html"},
		{name: "bad format", args: []string{"-f", "r", "--format", "pdf"}, wantErr: `--format "pdf": write md or html`},
		{name: "one-sided trace", args: []string{"-f", "r.md", "--trace", "deploy/client"}, wantErr: "--trace deploy/client: write FROM,TO"},
		{name: "bad status", args: []string{"-f", "r.md", "--status", "5x"}, wantErr: `--status "5x"`},
		{name: "two workloads", args: []string{"a", "b", "-f", "r.md"}, wantErr: "accepts at most 1 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *ReportOptions
			cmd := NewCmdReport(cmdtest.Factory(t, streams), func(_ context.Context, o *ReportOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flags{got.Workload, got.File, got.Format, got.Filter.Status, got.Ns, got.Trace}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func reportFake(gotReq *daemon.RequestsRequest, gotTrace *daemon.TraceRequest) *cmdtest.FakeService {
	checkout := func(id uint64, replayOf string) *recording.Exchange {
		h := http.Header{"Content-Type": {"application/json"}}
		if replayOf != "" {
			h.Set("X-Tether-Replay", replayOf)
		}
		return &recording.Exchange{ID: id, Time: since.Add(time.Duration(id) * time.Minute), Pod: "orders-7d9c-x2x", Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "POST", Target: "/orders/42/checkout", Header: h, Body: []byte(`{"coupon":"HALFOFF"}`)},
			Response: &recording.Message{Status: 500, Header: http.Header{}, Body: []byte(`{"error":"<script>x</script>"}`)}}
	}
	return &cmdtest.FakeService{
		SessionLogFunc: func(_ context.Context, req daemon.SessionLogRequest) (daemon.SessionLog, error) {
			if req.Append != nil {
				return daemon.SessionLog{}, errdefs.User("the report appends nothing")
			}
			return daemon.SessionLog{Session: info(), Events: []daemon.SessionEvent{
				{Kind: daemon.EventReproduce, At: since.Add(5 * time.Minute), By: "ana@laptop",
					Reproduce: &daemon.ReproduceRecord{Workload: "orders", To: "cluster", Count: 10, Recurred: 10, Answers: 10}},
				{Kind: daemon.EventRollback, At: since.Add(9 * time.Minute), By: "ana@laptop", Error: "session \"incident-42\" in shop: 1 object(s) cannot be restored in place; nothing was changed",
					Rollback: &daemon.SessionRollbackResult{Session: info(), Steps: []daemon.SessionStep{}}},
			}}, nil
		},
		SessionDiffFunc: func(context.Context, string) (daemon.SessionDiff, error) { return diffResult(), nil },
		RequestsFunc: func(_ context.Context, req daemon.RequestsRequest, emit func(*recording.Exchange) error) ([]daemon.PodRecording, error) {
			*gotReq = req
			for _, e := range []*recording.Exchange{checkout(3, ""), checkout(7, "x2x.3")} {
				if err := emit(e); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		TraceFunc: func(_ context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error) {
			*gotTrace = req
			progress("adding tether's agent to pod client-1")
			return daemon.TraceReport{Source: daemon.TraceSource{Pod: "client-1", Namespace: "shop"}, Target: daemon.TraceTarget{Input: "svc/orders"},
				Steps: []daemon.TraceStep{{Name: "service", Status: daemon.TraceBroken, Summary: "no endpoints",
					Service: &daemon.TraceServiceResult{Name: "orders", Namespace: "shop"}}},
				FirstBroken: "service", Conclusion: "broken at service: no endpoints"}, nil
		},
	}
}

func TestReportRun(t *testing.T) {
	var req daemon.RequestsRequest
	var tr daemon.TraceRequest
	fake := reportFake(&req, &tr)
	dir := t.TempDir()
	now := func() time.Time { return since.Add(time.Hour) }
	for _, format := range []string{FormatMarkdown, FormatHTML} {
		t.Run(format, func(t *testing.T) {
			streams, out, errOut := cmdtest.Streams()
			file := filepath.Join(dir, "report."+format)
			o := &ReportOptions{Options: Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)},
				File: file, Format: format, Trace: []string{"deploy/client", "svc/orders"}, AgentImage: "agent:dev",
				Now: now, Write: func(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }}
			if err := o.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := o.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The workload of the last reproduce run; 5xx since the start.
			if req.Workload != "orders" || req.Filter.Status != "5xx" || !req.Filter.Since.Equal(since) || req.Namespace != "shop" {
				t.Errorf("requests asked: %+v", req)
			}
			if diff := cmp.Diff(daemon.TraceRequest{Namespace: "shop", From: "deploy/client", To: "svc/orders", AgentImage: "agent:dev"}, tr); diff != "" {
				t.Errorf("trace asked (-want +got):\n%s", diff)
			}
			want := "Wrote " + file + ": 2 changed objects, 1 failing requests, the path broken at service, 1 reproduce runs, 1 rollbacks.\n"
			if out.String() != want {
				t.Errorf("output %q, want %q", out, want)
			}
			if !strings.Contains(errOut.String(), "adding tether's agent to pod client-1") {
				t.Errorf("progress: %q", errOut)
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			wants := []string{"secret/db", "x2x.3", "1 replays by tether left out", "10/10 (100%)", "refused"}
			if format == FormatMarkdown {
				wants = append(wants, "```mermaid\n", "+  password: (3 bytes, sha256 bb)")
			} else {
				wants = append(wants, "<svg ", "&lt;script&gt;x&lt;/script&gt;")
			}
			for _, w := range wants {
				if !strings.Contains(got, w) {
					t.Errorf("the report lacks %q", w)
				}
			}
			if strings.Contains(got, "x2x.7") {
				t.Error("tether's own replay is listed as a failing request")
			}
		})
	}
}

// No session: a user error, and no file.
func TestReportNoSession(t *testing.T) {
	fake := &cmdtest.FakeService{SessionLogFunc: func(context.Context, daemon.SessionLogRequest) (daemon.SessionLog, error) {
		return daemon.SessionLog{}, errdefs.New(errdefs.ErrUser, daemon.NoSessionReason, "namespace shop has no session; `tether session start -n shop` starts one")
	}}
	streams, _, _ := cmdtest.Streams()
	file := filepath.Join(t.TempDir(), "r.md")
	o := &ReportOptions{Options: Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)},
		File: file, Format: FormatMarkdown, Now: time.Now, Write: func(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitUser, "namespace shop has no session")
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a report was written: %v", err)
	}
}

// Without a workload or a trace the report says what to add, and the
// trace's failure is a note, not the command's failure.
func TestReportNotes(t *testing.T) {
	var req daemon.RequestsRequest
	var tr daemon.TraceRequest
	fake := reportFake(&req, &tr)
	fake.SessionLogFunc = func(context.Context, daemon.SessionLogRequest) (daemon.SessionLog, error) {
		return daemon.SessionLog{Session: info()}, nil
	}
	fake.TraceFunc = func(context.Context, daemon.TraceRequest, func(string)) (daemon.TraceReport, error) {
		return daemon.TraceReport{}, errdefs.User("pod client-1 not found")
	}
	streams, out, _ := cmdtest.Streams()
	o := &ReportOptions{Options: Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)},
		File: "-", Format: FormatMarkdown, Trace: []string{"client-1", "svc/orders"}, Now: time.Now}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"No workload named", "could not run: pod client-1 not found", "No `tether reproduce` run was made"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("the report lacks %q:\n%s", w, out)
		}
	}
	if req.Workload != "" {
		t.Errorf("requests read without a workload: %+v", req)
	}
}
