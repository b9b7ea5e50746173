package trace

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdTrace(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    [4]string // from, to, namespace, output
		wantErr string
	}{
		{name: "deployment to service", args: []string{"deploy/frontend", "svc/orders"}, want: [4]string{"deploy/frontend", "svc/orders", "shop", ""}},
		{name: "url, json", args: []string{"frontend-1", "http://orders/healthz", "-o", "json"}, want: [4]string{"frontend-1", "http://orders/healthz", "shop", "json"}},
		{name: "no destination", args: []string{"deploy/frontend"}, wantErr: "accepts 2 arg(s), received 1: trace FROM TO"},
		{name: "blank destination", args: []string{"deploy/frontend", " "}, wantErr: "FROM and TO must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *TraceOptions
			cmd := NewCmdTrace(cmdtest.Factory(t, streams), func(_ context.Context, o *TraceOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, [4]string{got.From, got.To, got.Ns, got.Output}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.AgentImage == "" {
				t.Error("no default agent image")
			}
		})
	}
}

func TestTraceValidate(t *testing.T) {
	tests := []struct {
		name string
		o    TraceOptions
		want string
	}{
		{"valid", TraceOptions{From: "deploy/frontend", To: "svc/orders"}, ""},
		{"blank from", TraceOptions{From: "", To: "svc/orders"}, "FROM and TO must not be empty: tether trace FROM TO (see --help)"},
		{"bad output", TraceOptions{From: "a", To: "b", Output: "dot"}, `unknown output format "dot"`},
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

// fakeDaemon answers Trace with rep or err, keeping the request it got.
type fakeDaemon struct {
	got daemon.TraceRequest
	rep daemon.TraceReport
	err error
}

// run serves f through the real gRPC adapter on loopback and runs the
// command's Run against it.
func run(t *testing.T, f *fakeDaemon, output string) (string, string, error) {
	t.Helper()
	fake := &cmdtest.FakeService{TraceFunc: func(_ context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error) {
		f.got = req
		progress("adding the agent to pod client")
		return f.rep, f.err
	}}
	streams, out, errOut := cmdtest.Streams()
	o := &TraceOptions{IOStreams: streams, From: "deploy/client", To: "svc/orders", AgentImage: "img", Output: output, Ns: "shop",
		DaemonService: cmdtest.ServeDaemon(t, fake)}
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func report(broken bool) daemon.TraceReport {
	rep := daemon.TraceReport{Conclusion: "path healthy", DurationMillis: 812}
	rep.Source.Pod, rep.Source.Namespace = "client-1", "shop"
	rep.Target.Input = "svc/orders"
	rep.Steps = []daemon.TraceStep{
		{Name: "dns", Status: daemon.TraceOK, Summary: "orders resolves to 10.43.0.7", Details: []string{"resolv.conf: nameserver 10.43.0.10"}},
		{Name: "service", Status: daemon.TraceOK, Summary: "service shop/orders 10.43.0.7:80 -> 1 ready endpoint"},
	}
	if broken {
		rep.Steps[1].Status, rep.Steps[1].Summary = daemon.TraceBroken, "service shop/orders has no ready endpoint"
		rep.FirstBroken, rep.Conclusion = "service", "broken at service: service shop/orders has no ready endpoint"
	}
	return rep
}

func TestRunPrintsReport(t *testing.T) {
	f := &fakeDaemon{rep: report(false)}
	out, errOut, err := run(t, f, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.TraceRequest{Namespace: "shop", From: "deploy/client", To: "svc/orders", AgentImage: "img"}, f.got); diff != "" {
		t.Errorf("request (-want +got)\n%s", diff)
	}
	want := `trace from pod shop/client-1 to svc/orders

  ok      dns      orders resolves to 10.43.0.7
                     resolv.conf: nameserver 10.43.0.10
  ok      service  service shop/orders 10.43.0.7:80 -> 1 ready endpoint

path healthy (traced in 812ms)
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got)\n%s", diff)
	}
	if !strings.Contains(errOut, "adding the agent") {
		t.Errorf("progress not relayed: %q", errOut)
	}
}

func TestRunBrokenPathExits3(t *testing.T) {
	out, _, err := run(t, &fakeDaemon{rep: report(true)}, "json")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitFailed {
		t.Fatalf("exit code %d (%v), want %d", code, err, cmdutil.ExitFailed)
	}
	var got daemon.TraceReport
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(report(true), got); diff != "" {
		t.Errorf("report through the daemon's wire and -o json (-want +got)\n%s", diff)
	}
}

func TestRunMapsErrors(t *testing.T) {
	_, _, err := run(t, &fakeDaemon{err: errdefs.User(`no pod "nope" in namespace shop`)}, "")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUser || !strings.Contains(err.Error(), `no pod "nope"`) {
		t.Errorf("user error: exit %d, %v", code, err)
	}
	_, _, err = run(t, &fakeDaemon{err: errors.New("tunnel broke")}, "")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitInternal {
		t.Errorf("internal error: exit %d, %v", code, err)
	}
	_, _, err = run(t, &fakeDaemon{}, "xml")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUser {
		t.Errorf("-o xml: exit %d, %v", code, err)
	}
}
