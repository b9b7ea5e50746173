package leave

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdLeave(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    [3]string // workload, namespace, output
		wantErr string
	}{
		{name: "workload", args: []string{"deploy/orders"}, want: [3]string{"deploy/orders", "shop", ""}},
		{name: "json", args: []string{"orders", "-o", "json"}, want: [3]string{"orders", "shop", "json"}},
		{name: "no workload", args: nil, wantErr: "accepts 1 arg(s), received 0: leave WORKLOAD"},
		{name: "bad output", args: []string{"orders", "-o", "xml"}, wantErr: `unknown output format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *LeaveOptions
			cmd := NewCmdLeave(cmdtest.Factory(t, streams), func(_ context.Context, o *LeaveOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, [3]string{got.Workload, got.Ns, got.Output}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeaveValidate(t *testing.T) {
	tests := []struct {
		name string
		o    LeaveOptions
		want string
	}{
		{"valid", LeaveOptions{Workload: "orders"}, ""},
		{"blank workload", LeaveOptions{Workload: " "}, "`tether status` lists the intercepts"},
		{"bad output", LeaveOptions{Workload: "orders", Output: "table"}, "use -o json or -o yaml"},
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

func TestLeaveRun(t *testing.T) {
	var gotNS, gotName string
	fake := &cmdtest.FakeService{LeaveFunc: func(_ context.Context, ns, name string) error {
		gotNS, gotName = ns, name
		if name == "deploy/nope" {
			return errdefs.NotFound("deploy/nope is not intercepted in %s", ns)
		}
		return nil
	}}
	tests := []struct {
		name     string
		workload string
		output   string
		daemon   func(context.Context) (daemon.Service, func(), error)
		wantOut  string
		wantCode int
		wantErr  string
	}{
		{name: "text", workload: "deploy/orders", wantOut: "Left deploy/orders: its traffic goes to its own pods again.\n"},
		{name: "json", workload: "deploy/orders", output: "json", wantOut: "{\n  \"left\": \"deploy/orders\",\n  \"namespace\": \"shop\"\n}\n"},
		{name: "yaml", workload: "deploy/orders", output: "yaml", wantOut: "left: deploy/orders\nnamespace: shop\n"},
		{name: "not intercepted", workload: "deploy/nope", wantCode: cmdutil.ExitUser, wantErr: "deploy/nope is not intercepted in shop"},
		{name: "no daemon", workload: "deploy/orders", daemon: cmdtest.NoDaemon, wantCode: cmdutil.ExitUser,
			wantErr: "deploy/orders is not intercepted: no tether daemon runs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, out, _ := cmdtest.Streams()
			o := &LeaveOptions{IOStreams: streams, Workload: tt.workload, Ns: "shop", Output: tt.output, DaemonService: tt.daemon}
			if o.DaemonService == nil {
				o.DaemonService = cmdtest.ServeDaemon(t, fake)
			}
			err := o.Run(context.Background())
			cmdtest.WantError(t, err, tt.wantCode, tt.wantErr)
			if diff := cmp.Diff(tt.wantOut, out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if tt.daemon == nil && (gotNS != "shop" || gotName != tt.workload) {
				t.Errorf("daemon was asked to leave %s in %s", gotName, gotNS)
			}
		})
	}
}
