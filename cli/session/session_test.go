package session

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
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdStart(t *testing.T) {
	type flags struct {
		Name, Ns, Output string
		Include          []string
	}
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr string
	}{
		{name: "named", args: []string{"incident-42"}, want: flags{Name: "incident-42", Ns: "shop"}},
		{name: "no name", args: nil, want: flags{Ns: "shop"}},
		{name: "include, json", args: []string{"--include", "deploy/orders,cm/flags", "-o", "json"},
			want: flags{Ns: "shop", Output: "json", Include: []string{"deploy/orders", "cm/flags"}}},
		{name: "two names", args: []string{"a", "b"}, wantErr: "accepts at most 1 arg(s), received 2: start [NAME]"},
		{name: "bad name", args: []string{"Incident 42"}, wantErr: `session name "Incident 42": use up to 63 lower-case letters`},
		{name: "bad include", args: []string{"--include", "orders"}, wantErr: `--include "orders": want KIND/NAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *StartOptions
			cmd := NewCmdStart(cmdtest.Factory(t, streams), func(_ context.Context, o *StartOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flags{got.Name, got.Ns, got.Output, got.Include}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewCmdOthers(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	f := cmdtest.Factory(t, streams)

	var r *RollbackOptions
	if err := cmdtest.Exec(NewCmdRollback(f, func(_ context.Context, o *RollbackOptions) error { r = o; return nil }),
		"--force", "--timeout", "90s", "-o", "yaml"); err != nil {
		t.Fatal(err)
	}
	if !r.Force || r.Timeout != 90*time.Second || r.Output != "yaml" || r.Ns != "shop" {
		t.Errorf("rollback options: %+v", r)
	}
	err := cmdtest.Exec(NewCmdRollback(f, func(context.Context, *RollbackOptions) error { return nil }), "--timeout", "0s")
	cmdtest.WantError(t, err, cmdutil.ExitUser, "--timeout 0s: give at least 1s")

	var d *DiffOptions
	if err := cmdtest.Exec(NewCmdDiff(f, func(_ context.Context, o *DiffOptions) error { d = o; return nil }), "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if d.Output != "json" || d.Ns != "shop" {
		t.Errorf("diff options: %+v", d)
	}
	err = cmdtest.Exec(NewCmdDiff(f, func(context.Context, *DiffOptions) error { return nil }), "deploy/orders")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `unknown command "deploy/orders" for "diff"`)

	var e *EndOptions
	if err := cmdtest.Exec(NewCmdEnd(f, func(_ context.Context, o *EndOptions) error { e = o; return nil })); err != nil {
		t.Fatal(err)
	}
	if e.Ns != "shop" {
		t.Errorf("end options: %+v", e)
	}
	err = cmdtest.Exec(NewCmdEnd(f, func(context.Context, *EndOptions) error { return nil }), "-o", "xml")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `unknown output format "xml"`)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    interface{ Validate() error }
		want string
	}{
		{"start", &StartOptions{Name: "incident-42", Include: []string{"deploy/orders"}}, ""},
		{"start, unnamed", &StartOptions{}, ""},
		{"start, long name", &StartOptions{Name: strings.Repeat("a", 64)}, "use up to 63"},
		{"start, include without name", &StartOptions{Include: []string{"deploy/"}}, `--include "deploy/": want KIND/NAME`},
		{"start, include with two slashes", &StartOptions{Include: []string{"apps/deploy/orders"}}, `want KIND/NAME`},
		{"rollback", &RollbackOptions{Timeout: time.Minute}, ""},
		{"rollback, no timeout", &RollbackOptions{}, "--timeout 0s: give at least 1s"},
		{"diff, bad output", &DiffOptions{Options{Output: "table"}}, `unknown output format "table"`},
		{"end", &EndOptions{}, ""},
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

var since = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func info() daemon.SessionInfo {
	return daemon.SessionInfo{Name: "incident-42", Namespace: "shop", Since: since, By: "ana@laptop", Objects: 7, Hash: "0123456789abcdef"}
}

func TestStartRun(t *testing.T) {
	var got daemon.SessionStartRequest
	fake := &cmdtest.FakeService{SessionStartFunc: func(_ context.Context, req daemon.SessionStartRequest) (daemon.SessionInfo, error) {
		got = req
		return info(), nil
	}}
	streams, out, _ := cmdtest.Streams()
	o := &StartOptions{Options: Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)},
		Name: "incident-42", Include: []string{"deploy/orders"}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.SessionStartRequest{Namespace: "shop", Name: "incident-42", Include: []string{"deploy/orders"}}, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if !strings.Contains(out.String(), "Session incident-42 started in shop at ") || !strings.Contains(out.String(), "7 objects snapshotted in the cluster (sha256 0123456789ab)") {
		t.Errorf("output:\n%s", out)
	}

	// A second session: the daemon's user error, exit 2.
	fake.SessionStartFunc = func(context.Context, daemon.SessionStartRequest) (daemon.SessionInfo, error) {
		return daemon.SessionInfo{}, errdefs.User(`namespace shop has a session already: "incident-41"`)
	}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitUser, `namespace shop has a session already: "incident-41"`)

	streams, out, _ = cmdtest.Streams()
	fake.SessionStartFunc = func(context.Context, daemon.SessionStartRequest) (daemon.SessionInfo, error) { return info(), nil }
	o = &StartOptions{Options: Options{IOStreams: streams, Ns: "shop", Output: "json", DaemonService: cmdtest.ServeDaemon(t, fake)}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var gotInfo daemon.SessionInfo
	if err := json.Unmarshal(out.Bytes(), &gotInfo); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(info(), gotInfo); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

func diffResult() daemon.SessionDiff {
	return daemon.SessionDiff{Session: info(), Changes: []daemon.SessionChange{
		{Object: "secret/db", Kind: "Secret", Name: "db", Change: "modified", Paths: []string{"data.password"},
			Diff: "--- snapshot/secret/db\n+++ cluster/secret/db\n@@ -1,1 +1,1 @@\n-  password: (3 bytes, sha256 aa)\n+  password: (3 bytes, sha256 bb)\n"},
		{Object: "service/debug", Kind: "Service", Name: "debug", Change: "created", Diff: "--- /dev/null\n+++ cluster/service/debug\n"},
	}}
}

func TestDiffRun(t *testing.T) {
	var ns string
	fake := &cmdtest.FakeService{SessionDiffFunc: func(_ context.Context, namespace string) (daemon.SessionDiff, error) {
		ns = namespace
		return diffResult(), nil
	}}
	streams, out, _ := cmdtest.Streams()
	o := &DiffOptions{Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ns != "shop" {
		t.Errorf("namespace %q", ns)
	}
	for _, want := range []string{"2 objects changed in shop since session incident-42 started", "  modified secret/db: data.password\n",
		"  created  service/debug\n", "-  password: (3 bytes, sha256 aa)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	streams, out, _ = cmdtest.Streams()
	o = &DiffOptions{Options{IOStreams: streams, Ns: "shop", Output: "json", DaemonService: cmdtest.ServeDaemon(t, fake)}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got daemon.SessionDiff
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(diffResult(), got); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}

	fake.SessionDiffFunc = func(context.Context, string) (daemon.SessionDiff, error) {
		return daemon.SessionDiff{}, errdefs.User("namespace shop has no session; `tether session start -n shop` starts one")
	}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitUser, "namespace shop has no session")
}

func TestRollbackRun(t *testing.T) {
	var got daemon.SessionRollbackRequest
	fake := &cmdtest.FakeService{SessionRollbackFunc: func(_ context.Context, req daemon.SessionRollbackRequest, progress func(string)) (daemon.SessionRollbackResult, error) {
		got = req
		progress("update secret/db")
		progress("waiting for deployment/orders: 1 of 3 replicas updated (2s)")
		return daemon.SessionRollbackResult{Session: info(), Verified: true, Steps: []daemon.SessionStep{
			{Object: "secret/db", Action: "update"}, {Object: "service/orders", Action: "create", Note: "recreated with a new cluster IP (10.43.0.10 was taken)"},
			{Object: "service/debug", Action: "delete"}}}, nil
	}}
	streams, out, errOut := cmdtest.Streams()
	o := &RollbackOptions{Options: Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)}, Force: true, Timeout: 2 * time.Minute}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.SessionRollbackRequest{Namespace: "shop", Force: true, RolloutTimeout: 120}, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	want := "  update     secret/db\n  create     service/orders (recreated with a new cluster IP (10.43.0.10 was taken))\n  delete     service/debug\n" +
		"Session incident-42 in shop rolled back: 3 objects restored, verified against the snapshot. `tether session end -n shop` drops the snapshot.\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if wantErr := "update secret/db\nwaiting for deployment/orders: 1 of 3 replicas updated (2s)\n"; errOut.String() != wantErr {
		t.Errorf("progress %q, want %q", errOut, wantErr)
	}

	// Refused: the daemon's failed check, exit 3.
	fake.SessionRollbackFunc = func(context.Context, daemon.SessionRollbackRequest, func(string)) (daemon.SessionRollbackResult, error) {
		return daemon.SessionRollbackResult{}, errdefs.FailedCheck("session \"incident-42\" in shop: 1 object(s) cannot be restored in place; nothing was changed")
	}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "cannot be restored in place; nothing was changed")
}

func TestEndRun(t *testing.T) {
	fake := &cmdtest.FakeService{SessionEndFunc: func(_ context.Context, ns string) (daemon.SessionInfo, error) {
		if ns != "shop" {
			t.Errorf("namespace %q", ns)
		}
		return info(), nil
	}}
	streams, out, _ := cmdtest.Streams()
	o := &EndOptions{Options{IOStreams: streams, Ns: "shop", DaemonService: cmdtest.ServeDaemon(t, fake)}}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := "Session incident-42 in shop ended: the changes stay, the snapshot is dropped.\n"; out.String() != want {
		t.Errorf("output %q, want %q", out, want)
	}
}
