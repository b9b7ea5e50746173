package quit

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
)

func TestNewCmdQuit(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "defaults", want: ""},
		{name: "yaml", args: []string{"-o", "yaml"}, want: "yaml"},
		{name: "an argument", args: []string{"now"}, wantErr: `unknown command "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *QuitOptions
			cmd := NewCmdQuit(cmdtest.Factory(t, streams), func(_ context.Context, o *QuitOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Output != tt.want || got.DaemonService == nil {
				t.Errorf("output %q, daemon set %v", got.Output, got.DaemonService != nil)
			}
		})
	}
}

func TestQuitValidate(t *testing.T) {
	for _, tt := range []struct{ output, want string }{
		{"", ""}, {"json", ""}, {"yaml", ""},
		{"wide", `unknown output format "wide": use -o json or -o yaml, or leave -o out for text`},
	} {
		err := (&QuitOptions{Output: tt.output}).Validate()
		if tt.want == "" && err != nil {
			t.Errorf("-o %q: %v", tt.output, err)
		}
		if tt.want != "" {
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		}
	}
}

func TestQuitRun(t *testing.T) {
	quits := 0
	fake := &cmdtest.FakeService{QuitFunc: func(context.Context) error { quits++; return nil }}
	broken := &cmdtest.FakeService{QuitFunc: func(context.Context) error { return errors.New("socket closed") }}
	tests := []struct {
		name     string
		output   string
		daemon   func(context.Context) (daemon.Service, func(), error)
		wantOut  string
		wantCode int
		wantErr  string
	}{
		{name: "stops", daemon: cmdtest.ServeDaemon(t, fake), wantOut: "Daemon stopped; intercepts ended.\n"},
		{name: "stops json", output: "json", daemon: cmdtest.ServeDaemon(t, fake), wantOut: "{\n  \"stopped\": true\n}\n"},
		{name: "none runs", daemon: cmdtest.NoDaemon, wantOut: "No daemon runs for this context.\n"},
		{name: "none runs json", output: "json", daemon: cmdtest.NoDaemon, wantOut: "{\n  \"stopped\": false\n}\n"},
		{name: "daemon fails", daemon: cmdtest.ServeDaemon(t, broken), wantCode: cmdutil.ExitInternal, wantErr: "socket closed (details: `tether logs`)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, out, _ := cmdtest.Streams()
			o := &QuitOptions{IOStreams: streams, Output: tt.output, DaemonService: tt.daemon}
			err := o.Run(context.Background())
			cmdtest.WantError(t, err, tt.wantCode, tt.wantErr)
			if diff := cmp.Diff(tt.wantOut, out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
	if quits != 2 {
		t.Errorf("the daemon was asked to quit %d times, want 2", quits)
	}
}
