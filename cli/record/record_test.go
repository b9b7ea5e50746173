package record

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestRecordValidate(t *testing.T) {
	ok := func() RecordOptions {
		return RecordOptions{Workload: "orders", ServicePort: "http", BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: time.Minute, AgentImage: "img"}
	}
	tests := []struct {
		name string
		edit func(*RecordOptions)
		want string
	}{
		{"valid", func(*RecordOptions) {}, ""},
		{"no port", func(o *RecordOptions) { o.ServicePort = "" }, "--port is required: the Service port to record, e.g. --port http or --port 80"},
		{"redact and no-redact", func(o *RecordOptions) { o.Redact, o.NoRedact = []string{"x"}, true }, "contradict"},
		{"bad redact name", func(o *RecordOptions) { o.Redact = []string{"a b"} }, "--redact"},
		{"bad size", func(o *RecordOptions) { o.Budget = "lots" }, `--budget "lots": write a size such as 512Ki, 1Mi or 64Mi`},
		{"budget too small", func(o *RecordOptions) { o.Budget = "512Ki" }, "at least 1Mi"},
		{"cap over half", func(o *RecordOptions) { o.Budget, o.BodyCap = "2Mi", "2Mi" }, "at most half"},
		{"zero timeout", func(o *RecordOptions) { o.RolloutTimeout = 0 }, "--rollout-timeout must be positive"},
		{"no image", func(o *RecordOptions) { o.AgentImage = "" }, "--agent-image must not be empty"},
		{"bad output", func(o *RecordOptions) { o.Output = "xml" }, "use -o json or -o yaml"},
		{"agent resources", func(o *RecordOptions) {
			o.AgentResources = intercept.AgentResourceFlags{CPU: "50m:1", Memory: "64Mi:256Mi"}
		}, ""},
		{"bad agent cpu", func(o *RecordOptions) { o.AgentResources.CPU = "1 core" }, `--agent-cpu "1 core": "1 core" is not a Kubernetes quantity`},
		{"agent memory request above limit", func(o *RecordOptions) { o.AgentResources.Memory = "300Mi:200Mi" },
			"the request 300Mi is above the limit 200Mi; lower the request or raise the limit"},
		{"agent memory limit under the budget", func(o *RecordOptions) { o.Budget, o.AgentResources.Memory = "128Mi", ":150Mi" },
			"--agent-memory :150Mi: the limit 150Mi leaves the agent too little for its recording budget of 128Mi (it may use the budget + 24Mi): give a limit above 152Mi, or lower --budget"},
		{"small budget, small limit", func(o *RecordOptions) { o.Budget, o.AgentResources.Memory = "8Mi", "16Mi:40Mi" }, ""},
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
			if err == nil || !strings.Contains(err.Error(), tt.want) || cmdutil.ExitCode(err) != cmdutil.ExitUser {
				t.Errorf("got %v, want a user error containing %q", err, tt.want)
			}
		})
	}
}

func TestRecordArgs(t *testing.T) {
	got := daemon.RecordRequest{Redact: []string{"password", "x-api-key"}, BodyCap: 4096, Budget: 8 << 20}.RecordArgs()
	want := []string{"--record-idle", "0", "--redact", "password,x-api-key", "--record-body-cap", "4096", "--record-budget", "8388608"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestNewCmdRecord(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    RecordOptions
		wantErr string
	}{
		{name: "defaults", args: []string{"deploy/orders", "--port", "http"},
			want: RecordOptions{Workload: "deploy/orders", ServicePort: "http", BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: 3 * time.Minute, Ns: "shop"}},
		{name: "every flag", args: []string{"orders", "--port", "80", "--redact", "password,x-api-key", "--redact", "token", "--body-cap", "4Ki",
			"--budget", "8Mi", "--rollout-timeout", "1m", "--agent-image", "img", "-o", "yaml", "--agent-cpu", "20m:250m", "--agent-memory", ":96Mi"},
			want: RecordOptions{Workload: "orders", ServicePort: "80", Redact: []string{"password", "x-api-key", "token"}, BodyCap: "4Ki", Budget: "8Mi",
				RolloutTimeout: time.Minute, AgentImage: "img", Output: "yaml", Ns: "shop",
				AgentResources: intercept.AgentResourceFlags{CPU: "20m:250m", Memory: ":96Mi"}}},
		{name: "agent memory under the budget", args: []string{"orders", "--port", "80", "--agent-memory", "64Mi:64Mi"},
			wantErr: "give a limit above 88Mi, or lower --budget"},
		{name: "no redaction", args: []string{"orders", "--port", "80", "--no-redact"},
			want: RecordOptions{Workload: "orders", ServicePort: "80", NoRedact: true, BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: 3 * time.Minute, Ns: "shop"}},
		{name: "no restart", args: []string{"orders", "--port", "80", "--no-restart"},
			want: RecordOptions{Workload: "orders", ServicePort: "80", NoRestart: true, BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: 3 * time.Minute, Ns: "shop"}},
		{name: "no restart with agent resources", args: []string{"orders", "--port", "80", "--no-restart", "--agent-cpu", "50m"},
			wantErr: "--no-restart adds the agent as an ephemeral container, which Kubernetes allows no resources"},
		{name: "passive", args: []string{"orders", "--port", "80", "--passive"},
			want: RecordOptions{Workload: "orders", ServicePort: "80", Passive: true, BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: 3 * time.Minute, Ns: "shop"}},
		{name: "passive without restart", args: []string{"orders", "--port", "80", "--passive", "--no-restart"},
			wantErr: "--passive and --no-restart: choose one"},
		{name: "no port", args: []string{"orders"}, wantErr: "--port is required"},
		{name: "no workload", args: []string{"--port", "80"}, wantErr: "accepts 1 arg(s), received 0: record WORKLOAD --port PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *RecordOptions
			cmd := NewCmdRecord(cmdtest.Factory(t, streams), func(_ context.Context, o *RecordOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.AgentImage == "" {
				tt.want.AgentImage = intercept.DefaultAgentImage()
			}
			if diff := cmp.Diff(tt.want, *got, cmdtest.IgnoreDeps); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRecordRunNoRestart: --no-restart reaches the daemon, and the
// output says leave stops it.
func TestRecordRunNoRestart(t *testing.T) {
	var got daemon.RecordRequest
	fake := &cmdtest.FakeService{RecordFunc: func(_ context.Context, req daemon.RecordRequest, _ func(string)) (daemon.RecordInfo, error) {
		got = req
		return daemon.RecordInfo{Workload: "deployment/orders", Namespace: "shop", Service: "orders", ServicePort: 80, AgentPort: 17000}, nil
	}}
	streams, out, _ := cmdtest.Streams()
	o := &RecordOptions{IOStreams: streams, Workload: "orders", ServicePort: "http", AgentImage: "img", BodyCap: "1Mi", Budget: "64Mi",
		RolloutTimeout: time.Minute, Ns: "shop", NoRestart: true, DaemonService: cmdtest.ServeDaemon(t, fake)}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !got.NoRestart {
		t.Errorf("request %+v: NoRestart not sent", got)
	}
	if !strings.Contains(out.String(), "stop recording:        tether leave deployment/orders") {
		t.Errorf("output does not say leave stops it:\n%s", out)
	}
}

func TestRecordRun(t *testing.T) {
	var got daemon.RecordRequest
	info := daemon.RecordInfo{Workload: "deployment/orders", Namespace: "shop", Service: "orders", ServicePort: 80, AgentPort: 17000}
	fake := &cmdtest.FakeService{RecordFunc: func(_ context.Context, req daemon.RecordRequest, progress func(string)) (daemon.RecordInfo, error) {
		got = req
		progress("waiting for 2/2 pods of deployment/orders to run the agent")
		if req.Workload == "nope" {
			return daemon.RecordInfo{}, errdefs.NotFound("no workload nope in shop")
		}
		return info, nil
	}}
	run := func(workload, output string, noRedact bool) (string, string, error) {
		streams, out, errOut := cmdtest.Streams()
		o := &RecordOptions{IOStreams: streams, Workload: workload, ServicePort: "http", AgentImage: "img", Output: output, NoRedact: noRedact,
			BodyCap: "4Ki", Budget: "8Mi", RolloutTimeout: time.Minute, Ns: "shop",
			AgentResources: intercept.AgentResourceFlags{Memory: "16Mi:48Mi"}, DaemonService: cmdtest.ServeDaemon(t, fake)}
		err := o.Run(context.Background())
		return out.String(), errOut.String(), err
	}

	out, errOut, err := run("orders", "", true)
	if err != nil {
		t.Fatal(err)
	}
	want := daemon.RecordRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", AgentImage: "img", RolloutTimeout: 60,
		NoRedact: true, BodyCap: 4096, Budget: 8 << 20, AgentResources: daemon.AgentResources{MemoryRequest: "16Mi", MemoryLimit: "48Mi"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	wantOut := `recording deployment/orders (service/orders port 80) in namespace shop
WARNING: redaction is off: secrets (Authorization, Cookie, ...) are recorded as seen
list what it records:  tether requests list deployment/orders
stop recording:        tether rollback deployment/orders
`
	if diff := cmp.Diff(wantOut, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if errOut != "waiting for 2/2 pods of deployment/orders to run the agent\n" {
		t.Errorf("progress on stderr: %q", errOut)
	}

	out, _, err = run("orders", "json", false)
	if err != nil {
		t.Fatal(err)
	}
	var gotInfo daemon.RecordInfo
	if err := json.Unmarshal([]byte(out), &gotInfo); err != nil || gotInfo != info {
		t.Errorf("-o json: %v\n%s", err, out)
	}

	_, _, err = run("nope", "", false)
	cmdtest.WantError(t, err, cmdutil.ExitUser, "no workload nope in shop")
}
