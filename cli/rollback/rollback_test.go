package rollback

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
)

func TestNewCmdRollback(t *testing.T) {
	type flags struct {
		Workload, Ns, Output string
		All, Force           bool
	}
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr string
	}{
		{name: "workload", args: []string{"deploy/orders"}, want: flags{Workload: "deploy/orders", Ns: "shop"}},
		{name: "all, forced, yaml", args: []string{"--all", "--force", "-o", "yaml"}, want: flags{Ns: "shop", All: true, Force: true, Output: "yaml"}},
		{name: "two workloads", args: []string{"orders", "billing"}, wantErr: "accepts at most 1 arg(s), received 2: rollback [WORKLOAD | --all]"},
		{name: "nothing named", args: nil, wantErr: "name the workload to roll back, or pass --all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *RollbackOptions
			cmd := NewCmdRollback(cmdtest.Factory(t, streams), func(_ context.Context, o *RollbackOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flags{got.Workload, got.Ns, got.Output, got.All, got.Force}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRollbackValidate(t *testing.T) {
	tests := []struct {
		name string
		o    RollbackOptions
		want string
	}{
		{"workload", RollbackOptions{Workload: "orders"}, ""},
		{"all", RollbackOptions{All: true, Output: "json"}, ""},
		{"neither", RollbackOptions{}, "name the workload to roll back, or pass --all for every one in the namespace"},
		{"both", RollbackOptions{Workload: "orders", All: true}, "name one workload or pass --all, not both"},
		{"bad output", RollbackOptions{All: true, Output: "xml"}, `unknown output format "xml"`},
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

func run(t *testing.T, results []daemon.RollbackResult, err error, output string) (daemon.RollbackRequest, string, string, error) {
	t.Helper()
	var got daemon.RollbackRequest
	fake := &cmdtest.FakeService{RollbackFunc: func(_ context.Context, req daemon.RollbackRequest) ([]daemon.RollbackResult, error) {
		got = req
		return results, err
	}}
	streams, out, errOut := cmdtest.Streams()
	o := &RollbackOptions{IOStreams: streams, All: true, Force: true, Output: output, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)}
	runErr := o.Run(context.Background())
	return got, out.String(), errOut.String(), runErr
}

func TestRollbackRun(t *testing.T) {
	results := []daemon.RollbackResult{{Workload: "deployment/orders", Namespace: "shop", Steps: []daemon.RollbackStep{
		{Object: "deployment/orders", Action: "restored"}, {Object: "service/orders", Action: "restored"},
		{Object: "secret/tether-agent-deployment-orders", Action: "kept", Reason: "the pod template still mounts it"}}}}
	req, out, _, err := run(t, results, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.RollbackRequest{Namespace: "shop", All: true, Force: true}, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	want := "deployment/orders in shop:\n  restored   deployment/orders\n  restored   service/orders\n" +
		"  kept       secret/tether-agent-deployment-orders: the pod template still mounts it\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}

	_, out, _, err = run(t, results, nil, "json")
	if err != nil {
		t.Fatal(err)
	}
	var got []daemon.RollbackResult
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(results, got); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}

	_, out, _, err = run(t, nil, nil, "")
	if err != nil || out != "Nothing to roll back in namespace shop.\n" {
		t.Errorf("nothing to do: %v, %q", err, out)
	}
	_, out, _, err = run(t, nil, nil, "json")
	if err != nil || out != "[]\n" {
		t.Errorf("nothing to do, -o json: %v, %q", err, out)
	}
}

func TestRollbackRunErrors(t *testing.T) {
	partial := []daemon.RollbackResult{
		{Workload: "deployment/orders", Namespace: "shop"},
		{Workload: "deployment/billing", Namespace: "shop", Error: "deployment/billing changed since tether changed it: --force restores it anyway"},
	}
	_, _, errOut, err := run(t, partial, nil, "")
	cmdtest.WantError(t, err, cmdutil.ExitUser, "1 of 2 rollbacks did not finish; fix what they say and run tether rollback again")
	if want := "deployment/billing: deployment/billing changed since tether changed it: --force restores it anyway\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	_, _, _, err = run(t, nil, errors.New("journal unreadable"), "")
	cmdtest.WantError(t, err, cmdutil.ExitInternal, "journal unreadable (details: `tether logs`)")
}
