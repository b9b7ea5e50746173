package status

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdStatus(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "defaults"},
		{name: "json", args: []string{"-o", "json"}, want: "json"},
		{name: "bad output", args: []string{"-o", "xml"}, wantErr: `unknown output format "xml"`},
		{name: "an argument", args: []string{"orders"}, wantErr: `unknown command "orders"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *StatusOptions
			cmd := NewCmdStatus(cmdtest.Factory(t, streams), func(_ context.Context, o *StatusOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Output != tt.want {
				t.Errorf("output = %q, want %q", got.Output, tt.want)
			}
		})
	}
}

func TestStatusValidate(t *testing.T) {
	for _, tt := range []struct{ output, want string }{
		{"", ""}, {"json", ""}, {"yaml", ""},
		{"JSON", `unknown output format "JSON": use -o json or -o yaml`},
	} {
		err := (&StatusOptions{Output: tt.output}).Validate()
		if tt.want == "" && err != nil {
			t.Errorf("-o %q: %v", tt.output, err)
		}
		if tt.want != "" {
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		}
	}
}

func daemonStatus() daemon.Status {
	return daemon.Status{Context: "test", Server: "https://10.0.0.1:6443", ServerVersion: "v1.32.0", DaemonVersion: "dev", PID: 42,
		Intercepts: []daemon.InterceptInfo{{Name: "deployment/orders", Namespace: "shop", Service: "orders", ServicePort: 80,
			AgentPort: 17000, LocalPort: 3000, Pods: []string{"orders-1"}, Paths: map[string]string{"orders-1": "direct"}}},
		Agents: []daemon.AgentInfo{{Workload: "deployment/orders", Namespace: "shop", Recording: true, Redacted: []string{"authorization", "cookie"},
			Pods: []daemon.AgentPod{
				{Pod: "orders-1"},
				{Pod: "orders-2", IdleSince: statusNow.Add(-12 * time.Minute), RecordIdle: 30 * time.Minute, TunnelKept: true},
				{Pod: "orders-3", IdleSince: statusNow.Add(-(3*time.Hour + 5*time.Minute)), RecordIdle: 30 * time.Minute, RecordingPaused: true},
				{Pod: "orders-4", IdleSince: statusNow.Add(-45 * time.Second)},
				{Pod: "orders-5", Error: "tunnel to pod orders-5: refused"},
			}}},
		Sessions: []daemon.SessionInfo{{Name: "incident-42", Namespace: "shop", Since: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
			By: "ana@laptop", Objects: 7, Hash: "ab12"}}}
}

// TestStatusRunNoRestart: an intercept that restarted no pod says so, and
// so does the journal of one this daemon does not hold (over the wire).
func TestStatusRunNoRestart(t *testing.T) {
	st := daemonStatus()
	st.Intercepts[0].Mode = "no-restart"
	st.Agents = []daemon.AgentInfo{{Workload: "deployment/billing", Namespace: "shop", NoRestartUnheld: true}}
	st.Sessions = nil
	fake := &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) { return st, nil }}
	streams, out, _ := cmdtest.Streams()
	o := &StatusOptions{IOStreams: streams, DaemonService: cmdtest.ServeDaemon(t, fake)}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `Connected to context test (https://10.0.0.1:6443, Kubernetes v1.32.0); daemon dev, pid 42
Intercepts:
  deployment/orders in shop: service orders port 80 -> localhost:3000 (agent port 17000; mode: no-restart; pods: orders-1 (direct))
Agents (` + "`tether rollback WORKLOAD`" + ` removes one):
  deployment/billing in shop: an intercept or recording --no-restart this daemon does not hold (another tether's, or one whose daemon stopped): its Service sends traffic only to the pods marked then; if nobody uses it, ` + "`tether rollback deployment/billing -n shop`" + `
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

var statusNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func TestStatusRun(t *testing.T) {
	fake := &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) { return daemonStatus(), nil }}
	streams, out, _ := cmdtest.Streams()
	o := &StatusOptions{IOStreams: streams, DaemonService: cmdtest.ServeDaemon(t, fake), Now: func() time.Time { return statusNow }}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `Connected to context test (https://10.0.0.1:6443, Kubernetes v1.32.0); daemon dev, pid 42
Intercepts:
  deployment/orders in shop: service orders port 80 -> localhost:3000 (agent port 17000; pods: orders-1 (direct))
Agents (` + "`tether rollback WORKLOAD`" + ` removes one):
  deployment/orders in shop: recording, redacting authorization, cookie and names that look secret (docs/replay.md)
    pod orders-1: intercepted
    pod orders-2: idle 12m, recording until idle 30m (--record-idle); tunnel kept for the next intercept
    pod orders-3: idle 3h5m, recording paused (the next intercept resumes it)
    pod orders-4: idle 45s, recording (never pauses)
    pod orders-5: not reachable: tunnel to pod orders-5: refused
Sessions (` + "`tether session diff -n NAMESPACE`" + ` shows what changed):
  incident-42 in shop: since 2026-11-30T12:00:00Z by ana@laptop, 7 objects
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}

	out.Reset()
	o.Output = "json"
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	st := daemonStatus()
	if diff := cmp.Diff(Report{Connected: true, Daemon: &st}, got); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

func TestStatusRunWithoutDaemon(t *testing.T) {
	streams, out, _ := cmdtest.Streams()
	o := &StatusOptions{IOStreams: streams, Output: "json", DaemonService: cmdtest.NoDaemon}
	if err := o.Run(context.Background()); err != nil {
		t.Fatalf("no daemon is a state, not an error: %v", err)
	}
	if diff := cmp.Diff("{\n  \"connected\": false\n}\n", out.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStatusRunErrors(t *testing.T) {
	fake := &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) {
		return daemon.Status{}, errdefs.Unavailable("the API server does not answer")
	}}
	streams, _, _ := cmdtest.Streams()
	o := &StatusOptions{IOStreams: streams, DaemonService: cmdtest.ServeDaemon(t, fake)}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitInternal, "the API server does not answer (is the cluster reachable?")
}

// TestStatusSharedPort: an intercept that shares its port lists everyone's
// intercepts, with their filters and counts, and what went to the app.
func TestStatusSharedPort(t *testing.T) {
	since := time.Date(2026, 11, 30, 9, 0, 0, 0, time.Local)
	st := daemonStatus()
	st.Agents, st.Sessions = nil, nil
	st.Intercepts[0].Filter = httpfilter.Spec{Headers: []string{"x-tether-user=ana"}}
	st.Intercepts[0].Owner = "ana@laptop"
	st.Intercepts[0].PortIntercepts = []daemon.PortIntercept{
		{Owner: "ana@laptop", Filter: httpfilter.Spec{Headers: []string{"x-tether-user=ana"}}, Since: since, Requests: 12, Pod: "orders-1"},
		{Owner: "bob@desk", Filter: httpfilter.Spec{PathPrefix: "/api/"}, Mirror: true, Since: since.Add(time.Minute), Requests: 40, Dropped: 3, Shed: 2, Pod: "orders-1"},
	}
	st.Intercepts[0].ToApp, st.Intercepts[0].NotHTTP, st.Intercepts[0].TLS = 7, 2, 1
	fake := &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) { return st, nil }}
	streams, out, _ := cmdtest.Streams()
	o := &StatusOptions{IOStreams: streams, DaemonService: cmdtest.ServeDaemon(t, fake)}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `Connected to context test (https://10.0.0.1:6443, Kubernetes v1.32.0); daemon dev, pid 42
Intercepts:
  deployment/orders in shop: service orders port 80, requests with X-Tether-User=ana -> localhost:3000 (agent port 17000; pods: orders-1 (direct))
    the port's intercepts (agent of pod orders-1):
      ana@laptop: requests with X-Tether-User=ana, since 09:00:00 (12 requests)
      bob@desk: a copy of the requests with path /api/*, since 09:01:00 (40 copies, 3 dropped, 2 of them while the agent ran near its CPU limit)
    to the app: 7 requests no filter selected; 2 connections not cleartext HTTP (1 TLS), unfiltered
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestPodState: what a pod line says of its agent, intercepted or idle,
// aside, recording from packets.
func TestPodState(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	passive := &agent.PassiveStats{Conns: 4, MidStream: 1}
	tests := []struct {
		name string
		pod  daemon.AgentPod
		want []string // in the line, in order
		not  []string
	}{
		{name: "intercepted, in the path", pod: daemon.AgentPod{}, want: []string{"intercepted"}, not: []string{"aside", "packets"}},
		{name: "a mirror from packets, aside", pod: daemon.AgentPod{Aside: true, Passive: passive},
			want: []string{"intercepted", "stepped aside", "mirrors copy from the packets", "4 connections recorded from packets"}},
		{name: "idle, aside", pod: daemon.AgentPod{Aside: true, IdleSince: now.Add(-time.Minute)},
			want: []string{"stepped aside", "until the next intercept"}, not: []string{"mirrors"}},
		{name: "unreachable", pod: daemon.AgentPod{Error: "EOF", Aside: true}, want: []string{"not reachable: EOF"}, not: []string{"aside"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podState(tt.pod, true, now)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("podState = %q, want %q in it (in order %q)", got, w, tt.want)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("podState = %q, want no %q", got, n)
				}
			}
		})
	}
}
