package connect

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdConnect(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "defaults"},
		{name: "json", args: []string{"-o", "json"}, want: "json"},
		{name: "an argument", args: []string{"staging"}, wantErr: `unknown command "staging"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *ConnectOptions
			cmd := NewCmdConnect(cmdtest.Factory(t, streams), func(_ context.Context, o *ConnectOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := got.Kube
			if got.Output != tt.want || k.Context != "test" || k.Namespace != "shop" || k.Server != "https://127.0.0.1:1" || !strings.HasSuffix(k.Paths.Socket, ".sock") {
				t.Errorf("output %q, resolved %+v", got.Output, k)
			}
		})
	}
}

func TestConnectValidate(t *testing.T) {
	for _, tt := range []struct{ output, want string }{
		{"", ""}, {"yaml", ""},
		{"xml", `unknown output format "xml": use -o json or -o yaml`},
	} {
		err := (&ConnectOptions{Output: tt.output}).Validate()
		if tt.want == "" && err != nil {
			t.Errorf("-o %q: %v", tt.output, err)
		}
		if tt.want != "" {
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		}
	}
}

// clock advances by step on every reading.
func clock(step time.Duration) func() time.Time {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { now = now.Add(step); return now }
}

func options(t *testing.T, st daemon.Status, missing []access.Rule, output string) (*ConnectOptions, *bytes.Buffer) {
	fake := &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) { return st, nil }}
	streams, out, _ := cmdtest.Streams()
	var kube cmdutil.Target
	kube.Context, kube.Namespace, kube.Server = "test", "shop", "https://10.0.0.1:6443"
	kube.Paths.Socket, kube.Paths.Log = "/run/tether/d-1.sock", "/run/tether/d-1.log"
	o := &ConnectOptions{IOStreams: streams, Output: output, Kube: kube, DaemonService: cmdtest.ServeDaemon(t, fake), Now: clock(250 * time.Millisecond),
		MissingAccess: func(_ context.Context, ns string) ([]access.Rule, error) {
			if ns != "shop" {
				t.Errorf("access checked in %q", ns)
			}
			return missing, nil
		}}
	return o, out
}

func TestConnectRun(t *testing.T) {
	st := daemon.Status{Server: "https://10.0.0.1:6443", ServerVersion: "v1.32.0", PID: 42}
	missing := []access.Rule{{Verb: "patch", Group: "apps", Resource: "deployments", Why: "add the agent"}}
	o, out := options(t, st, missing, "")
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "Connected to context test (https://10.0.0.1:6443, Kubernetes v1.32.0) in 250ms\n" +
		"Namespace: shop\nDaemon: pid 42, socket /run/tether/d-1.sock\n\n" +
		"You may not do everything tether needs in namespace shop. Missing:\n" + access.Describe(missing) +
		"Ask for the Role in docs/intercept.md.\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}

	o, out = options(t, st, nil, "json")
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got Result
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	wantRes := Result{Context: "test", Namespace: "shop", Server: "https://10.0.0.1:6443", ServerVersion: "v1.32.0", DaemonPID: 42,
		Socket: "/run/tether/d-1.sock", Log: "/run/tether/d-1.log", Missing: []string{}, Took: 250 * time.Millisecond}
	if diff := cmp.Diff(wantRes, got); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

func TestConnectRunErrors(t *testing.T) {
	o, _ := options(t, daemon.Status{PID: 42}, nil, "")
	cmdtest.WantError(t, o.Run(context.Background()), cmdutil.ExitUser,
		"the cluster at https://10.0.0.1:6443 does not answer; check --context and your network (daemon log: /run/tether/d-1.log)")

	o, _ = options(t, daemon.Status{ServerVersion: "v1.32.0"}, nil, "")
	o.DaemonService = cmdtest.ServeDaemon(t, &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) {
		return daemon.Status{}, errdefs.Unavailable("dial tcp 10.0.0.1:6443: connection refused")
	}})
	cmdtest.WantError(t, o.Run(context.Background()), cmdutil.ExitInternal, "connection refused (is the cluster reachable?")
}
