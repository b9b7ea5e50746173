package intercept

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/cli/internal/runcmd"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/localuser"
)

func TestNewCmdIntercept(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    InterceptOptions
		wantErr string
	}{
		{name: "named port", args: []string{"orders", "--port", "http:3000"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute}},
		{name: "number only", args: []string{"deploy/orders", "--port", "8080"},
			want: InterceptOptions{Workload: "deploy/orders", Port: "8080", ServicePort: "8080", LocalPort: 8080, Ns: "shop", RolloutTimeout: 3 * time.Minute}},
		{name: "timeout and output", args: []string{"orders", "--port", "80:3000", "--rollout-timeout", "30s", "-o", "json"},
			want: InterceptOptions{Workload: "orders", Port: "80:3000", ServicePort: "80", LocalPort: 3000, Ns: "shop", RolloutTimeout: 30 * time.Second, Output: "json"}},
		{name: "path", args: []string{"orders", "--port", "http:3000", "--path", "port-forward"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				TunnelPath: "port-forward"}},
		{name: "unknown path", args: []string{"orders", "--port", "http:3000", "--path", "vpn"}, wantErr: `--path "vpn": want direct, port-forward or auto`},
		{name: "agent resources", args: []string{"orders", "--port", "http:3000", "--agent-cpu", "50m:1", "--agent-memory", "48Mi:160Mi"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				AgentResources: AgentResourceFlags{CPU: "50m:1", Memory: "48Mi:160Mi"}}},
		{name: "bad agent memory", args: []string{"orders", "--port", "http:3000", "--agent-memory", "lots"},
			wantErr: `--agent-memory "lots": "lots" is not a Kubernetes quantity; write REQUEST[:LIMIT], e.g. --agent-memory 64Mi:256Mi`},
		{name: "named without local", args: []string{"orders", "--port", "http"}, wantErr: "write --port http:LOCALPORT"},
		{name: "local not a number", args: []string{"orders", "--port", "http:x"}, wantErr: `local port "x" is not a number`},
		{name: "no workload", args: []string{"--port", "80"}, wantErr: "accepts 1 arg"},
		{name: "with CMD", args: []string{"orders", "--port", "http:3000", "--", "sh", "-c", "true"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				Command: []string{"sh", "-c", "true"}, Path: mustLook(t, "sh"), Dash: 1}},
		{name: "CMD not found", args: []string{"orders", "--port", "http:3000", "--", "no-such-program-tether"}, wantErr: `CMD "no-such-program-tether"`},
		{name: "nothing after --", args: []string{"orders", "--port", "http:3000", "--"}, wantErr: "no command after --"},
		{name: "two workloads before --", args: []string{"orders", "db", "--port", "http:3000", "--", "sh"}, wantErr: "accepts 1 arg"},
		{name: "forward with CMD", args: []string{"orders", "--port", "http:3000", "--forward", "svc/db:5432:15432", "--", "sh"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				Command: []string{"sh"}, Path: mustLook(t, "sh"), Dash: 1, ForwardFlags: []string{"svc/db:5432:15432"},
				Forwards: []runcmd.Forward{{Service: "db", Port: "5432", LocalPort: 15432}}}},
		{name: "forward without CMD", args: []string{"orders", "--port", "http:3000", "--forward", "svc/db:5432"}, wantErr: "--forward goes with -- CMD"},
		{name: "unknown network with CMD", args: []string{"orders", "--port", "http:3000", "--network", "vpn", "--", "sh"}, wantErr: `--network "vpn": want proxy or namespace`},
		{name: "--env --files with CMD", args: []string{"orders", "--port", "http:3000", "--env", "--files", "/tmp/tether-pod-files-unit", "--", "sh"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				Command: []string{"sh"}, Path: mustLook(t, "sh"), Dash: 1, Env: true, FilesDir: "/tmp/tether-pod-files-unit"}},
		{name: "--env without CMD", args: []string{"orders", "--port", "http:3000", "--env"}, wantErr: "--env and --files go with -- CMD"},
		{name: "--files without CMD", args: []string{"orders", "--port", "http:3000", "--files", "d"}, wantErr: "--env and --files go with -- CMD"},
		{name: "--files under a file", args: []string{"orders", "--port", "http:3000", "--files", "/dev/null/d", "--", "sh"}, wantErr: "/dev/null is not a folder"},
		{name: "-o json with CMD", args: []string{"orders", "--port", "http:3000", "-o", "json", "--", "sh"}, wantErr: "-o json and -- CMD do not mix"},
		{name: "header after a space", args: []string{"orders", "--port", "http:3000", "--http-header", "x-user=ana", "--http-header=x-env=~dev|stag"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				HeaderFlags: []string{myHeader, "x-env=~dev|stag"}, Filter: httpfilter.Spec{Headers: []string{"x-user=ana", "x-env=~dev|stag"}}}},
		{name: "header before the workload", args: []string{"--http-header", "x-user=ana", "orders", "--port", "http:3000"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				HeaderFlags: []string{myHeader}, Filter: httpfilter.Spec{Headers: []string{"x-user=ana"}}}},
		{name: "bare header, path, mirror", args: []string{"orders", "--port", "http:3000", "--http-header", "--http-path", "/api/", "--http-path-regex", "/api/v[0-9]+/.*", "--mirror"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				HeaderFlags: []string{myHeader}, PathPrefix: "/api/", PathRegex: "/api/v[0-9]+/.*", Mirror: true,
				Filter: httpfilter.Spec{Headers: []string{"x-tether-user=" + localuser.Name()}, PathPrefix: "/api/", PathRegex: "/api/v[0-9]+/.*"}}},
		{name: "a header value without the flag", args: []string{"orders", "x-user=ana", "--port", "http:3000"}, wantErr: `unexpected argument "x-user=ana": a header filter goes with --http-header`},
		{name: "bad header name", args: []string{"orders", "--port", "http:3000", "--http-header=x user=ana"}, wantErr: `"x user" is not a valid header name`},
		{name: "bad path regex", args: []string{"orders", "--port", "http:3000", "--http-path-regex", "("}, wantErr: `path filter "(": error parsing regexp`},
		{name: "no restart", args: []string{"orders", "--port", "http:3000", "--no-restart"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				NoRestart: true}},
		{name: "no restart with agent resources", args: []string{"orders", "--port", "http:3000", "--no-restart", "--agent-memory", "64Mi"},
			wantErr: "--no-restart adds the agent as an ephemeral container, which Kubernetes allows no resources"},
		{name: "path without slash", args: []string{"orders", "--port", "http:3000", "--http-path", "api"}, wantErr: `a path starts with /`},
		{name: "passive mirror", args: []string{"orders", "--port", "http:3000", "--mirror", "--passive"},
			want: InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000, Ns: "shop", RolloutTimeout: 3 * time.Minute,
				Mirror: true, Passive: true}},
		{name: "passive without mirror", args: []string{"orders", "--port", "http:3000", "--passive"}, wantErr: "--passive makes a mirror copy from the pods' packets: add --mirror"},
		{name: "passive no restart", args: []string{"orders", "--port", "http:3000", "--mirror", "--passive", "--no-restart"}, wantErr: "--passive and --no-restart: choose one"},
		{name: "passive agent idle", args: []string{"orders", "--port", "http:3000", "--mirror", "--passive", "--agent-idle", "5m"}, wantErr: "--agent-idle and --passive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *InterceptOptions
			cmd := NewCmdIntercept(cmdtest.Factory(t, streams), func(_ context.Context, o *InterceptOptions) error {
				got = o
				return nil
			})
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.AgentImage != "docker.io/tetherkube/tether-agent:dev" {
				t.Errorf("default agent image = %q", got.AgentImage)
			}
			tt.want.AgentImage = got.AgentImage
			if tt.want.TunnelPath == "" {
				tt.want.TunnelPath = "auto"
			}
			if !slices.Contains(tt.args, "--") {
				tt.want.Dash = -1
			}
			if diff := cmp.Diff(tt.want, *got, cmdtest.IgnoreDeps); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInterceptValidate(t *testing.T) {
	valid := func() InterceptOptions {
		return InterceptOptions{Workload: "orders", Port: "http:3000", ServicePort: "http", LocalPort: 3000,
			AgentImage: "img", RolloutTimeout: time.Minute}
	}
	tests := []struct {
		name string
		edit func(*InterceptOptions)
		want string
	}{
		{"valid", func(*InterceptOptions) {}, ""},
		{"no port", func(o *InterceptOptions) { o.Port, o.ServicePort, o.LocalPort = "", "", 0 }, "--port is required: name the Service port and the local port, e.g. --port http:3000"},
		{"empty service port", func(o *InterceptOptions) { o.Port, o.ServicePort = ":3000", "" }, "no Service port before the colon"},
		{"local out of range", func(o *InterceptOptions) { o.LocalPort = 70000 }, "local port 70000 is out of range 1-65535"},
		{"negative agent idle", func(o *InterceptOptions) { o.AgentIdle = -time.Second }, "--agent-idle -1s: give a duration of 1s or more"},
		{"agent idle under a second", func(o *InterceptOptions) { o.AgentIdle = time.Millisecond }, "--agent-idle 1ms: give a duration of 1s or more"},
		{"agent idle with --no-restart", func(o *InterceptOptions) { o.AgentIdle = time.Minute; o.NoRestart = true }, "--agent-idle is for the sidecar agent"},
		{"zero timeout", func(o *InterceptOptions) { o.RolloutTimeout = 0 }, "--rollout-timeout must be positive"},
		{"no image", func(o *InterceptOptions) { o.AgentImage = "" }, "--agent-image must not be empty"},
		{"bad output", func(o *InterceptOptions) { o.Output = "xml" }, "use -o json or -o yaml"},
		{"no restart", func(o *InterceptOptions) { o.NoRestart = true }, ""},
		{"no restart, agent cpu", func(o *InterceptOptions) { o.NoRestart, o.AgentResources.CPU = true, "50m" },
			"--no-restart adds the agent as an ephemeral container, which Kubernetes allows no resources: drop --agent-cpu and --agent-memory"},
		{"agent resources", func(o *InterceptOptions) { o.AgentResources = AgentResourceFlags{CPU: "50m:1", Memory: "48Mi:160Mi"} }, ""},
		{"agent request alone", func(o *InterceptOptions) { o.AgentResources = AgentResourceFlags{CPU: "2", Memory: "1Gi"} }, ""},
		{"agent limit alone", func(o *InterceptOptions) { o.AgentResources = AgentResourceFlags{CPU: ":2", Memory: ":1Gi"} }, ""},
		{"bad cpu", func(o *InterceptOptions) { o.AgentResources.CPU = "fast" },
			`--agent-cpu "fast": "fast" is not a Kubernetes quantity; write REQUEST[:LIMIT], e.g. --agent-cpu 250m:1`},
		{"bad memory limit", func(o *InterceptOptions) { o.AgentResources.Memory = "64Mi:big" }, `"big" is not a Kubernetes quantity`},
		{"negative cpu", func(o *InterceptOptions) { o.AgentResources.CPU = "-1" }, `"-1" is not a Kubernetes quantity`},
		{"only a colon", func(o *InterceptOptions) { o.AgentResources.Memory = ":" }, `--agent-memory ":": write REQUEST[:LIMIT]`},
		{"cpu request above limit", func(o *InterceptOptions) { o.AgentResources.CPU = "2:1" },
			"--agent-cpu 2:1: the request 2 is above the limit 1; lower the request or raise the limit"},
		{"memory request above limit", func(o *InterceptOptions) { o.AgentResources.Memory = "512Mi:256Mi" }, "the request 512Mi is above the limit 256Mi"},
		{"memory limit under the default budget", func(o *InterceptOptions) { o.AgentResources.Memory = "32Mi:88Mi" },
			"--agent-memory 32Mi:88Mi: the limit 88Mi leaves the agent too little for its recording budget of 64Mi (it may use the budget + 24Mi): give a limit above 88Mi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		})
	}
}

func run(t *testing.T, fake *cmdtest.FakeService, output string) (string, string, error) {
	t.Helper()
	streams, out, errOut := cmdtest.Streams()
	o := &InterceptOptions{
		IOStreams: streams, Workload: "orders", ServicePort: "http", LocalPort: 3000, Ns: "shop",
		AgentImage: "img", RolloutTimeout: time.Minute, Output: output, TunnelPath: "direct",
		AgentResources: AgentResourceFlags{CPU: ":1", Memory: "48Mi:160Mi"},
		DaemonService:  cmdtest.ServeDaemon(t, fake),
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func TestInterceptRun(t *testing.T) {
	var got daemon.InterceptRequest
	info := daemon.InterceptInfo{Name: "deployment/orders", Namespace: "shop", Service: "orders",
		ServicePort: 80, AgentPort: 17000, LocalPort: 3000, Pods: []string{"orders-1", "orders-2"},
		Paths: map[string]string{"orders-1": "direct", "orders-2": "port-forward"}}
	fake := &cmdtest.FakeService{InterceptFunc: func(_ context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
		got = req
		progress("waiting for 1/1 pods of deployment/orders to run the agent, 1s")
		return info, nil
	}}
	out, errOut, err := run(t, fake, "")
	if err != nil {
		t.Fatal(err)
	}
	wantReq := daemon.InterceptRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", LocalPort: 3000, AgentImage: "img", RolloutTimeout: 60,
		AgentResources: daemon.AgentResources{CPULimit: "1", MemoryRequest: "48Mi", MemoryLimit: "160Mi"}, Path: "direct"}
	if diff := cmp.Diff(wantReq, got); diff != "" {
		t.Errorf("request the daemon got (-want +got):\n%s", diff)
	}
	wantOut := "Intercepting deployment/orders in shop: service orders port 80 -> localhost:3000 (pods: orders-1 (direct), orders-2 (port-forward))\nStop with: tether leave deployment/orders -n shop\n"
	if diff := cmp.Diff(wantOut, out); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("waiting for 1/1 pods of deployment/orders to run the agent, 1s\n", errOut); diff != "" {
		t.Errorf("progress goes to stderr only (-want +got):\n%s", diff)
	}

	out, _, err = run(t, fake, "json")
	if err != nil {
		t.Fatal(err)
	}
	var gotInfo daemon.InterceptInfo
	if err := json.Unmarshal([]byte(out), &gotInfo); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(info, gotInfo); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

// TestInterceptRunNoRestart: --no-restart reaches the daemon, and the
// mode comes back in -o json.
func TestInterceptRunNoRestart(t *testing.T) {
	var got daemon.InterceptRequest
	info := daemon.InterceptInfo{Name: "deployment/orders", Namespace: "shop", Service: "orders",
		ServicePort: 80, AgentPort: 17000, LocalPort: 3000, Pods: []string{"orders-1"}, Mode: "no-restart"}
	fake := &cmdtest.FakeService{InterceptFunc: func(_ context.Context, req daemon.InterceptRequest, _ func(string)) (daemon.InterceptInfo, error) {
		got = req
		return info, nil
	}}
	streams, out, _ := cmdtest.Streams()
	o := &InterceptOptions{IOStreams: streams, Workload: "orders", ServicePort: "http", LocalPort: 3000, Ns: "shop",
		AgentImage: "img", RolloutTimeout: time.Minute, Output: "json", TunnelPath: "auto", NoRestart: true,
		DaemonService: cmdtest.ServeDaemon(t, fake)}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantReq := daemon.InterceptRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", LocalPort: 3000, AgentImage: "img",
		RolloutTimeout: 60, Path: "auto", NoRestart: true}
	if diff := cmp.Diff(wantReq, got); diff != "" {
		t.Errorf("request the daemon got (-want +got):\n%s", diff)
	}
	var gotInfo daemon.InterceptInfo
	if err := json.Unmarshal(out.Bytes(), &gotInfo); err != nil {
		t.Fatal(err)
	}
	if gotInfo.Mode != "no-restart" {
		t.Errorf("mode = %q, want no-restart", gotInfo.Mode)
	}
}

func TestInterceptRunErrors(t *testing.T) {
	tests := []struct {
		err      error
		wantCode int
		wantMsg  string
	}{
		{errdefs.User("service orders has no port web"), cmdutil.ExitUser, "service orders has no port web"},
		{errdefs.AlreadyExists("already intercepted"), cmdutil.ExitUser, "already intercepted"},
		{fmt.Errorf("etcd is on fire"), cmdutil.ExitInternal, "etcd is on fire (details: `tether logs`)"},
	}
	for _, tt := range tests {
		fake := &cmdtest.FakeService{InterceptFunc: func(context.Context, daemon.InterceptRequest, func(string)) (daemon.InterceptInfo, error) {
			return daemon.InterceptInfo{}, tt.err
		}}
		_, _, err := run(t, fake, "")
		cmdtest.WantError(t, err, tt.wantCode, tt.wantMsg)
	}
}

func mustLook(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInterceptCommand: the intercept lasts as long as CMD, CMD runs in
// the intercepted workload's run, and tether exits with CMD's status.
func TestInterceptCommand(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	call := func(c string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, c)
	}
	var runReq daemon.RunRequest
	svc := &cmdtest.FakeService{
		InterceptFunc: func(ctx context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
			call("intercept")
			if !req.LocalPortLater {
				t.Error("the intercept checks the local port, where CMD listens only once it started")
			}
			return daemon.InterceptInfo{Name: "deployment/orders", Namespace: "shop", Service: "orders", ServicePort: 80, LocalPort: 3000,
				Pods: []string{"orders-1"}}, nil
		},
		RunFunc: func(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error {
			call("run")
			runReq = req
			ready(daemon.RunInfo{Pod: "orders-1", Namespace: "shop", HTTPAddr: "127.0.0.1:3128", ProxyUsername: "tether", ProxyPassword: "pw"})
			<-ctx.Done()
			return nil
		},
		LeaveFunc: func(ctx context.Context, namespace, name string) error {
			call("leave " + namespace + " " + name)
			return nil
		},
	}
	streams, out, errOut := cmdtest.Streams()
	cmd := NewCmdIntercept(cmdtest.Factory(t, streams), func(ctx context.Context, o *InterceptOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, svc)
		o.Environ = func() []string { return []string{"PATH=" + os.Getenv("PATH")} }
		return o.Run(ctx)
	})
	err := cmdtest.Exec(cmd, "orders", "--port", "http:3000", "--network", "proxy", "--", "sh", "-c", `echo "$TETHER_POD $HTTP_PROXY"; exit 5`)
	cmdtest.WantError(t, err, 5, "")
	if want := "orders-1 http://tether:pw@127.0.0.1:3128\n"; out.String() != want {
		t.Errorf("CMD printed %q, want %q", out, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"intercept", "run", "leave shop deployment/orders"}, calls); diff != "" {
		t.Errorf("calls (-want +got)\n%s", diff)
	}
	if runReq.Target != "deployment/orders" || runReq.Namespace != "shop" {
		t.Errorf("run request %+v, want the intercepted workload", runReq)
	}
	if !strings.Contains(errOut.String(), "left the intercept of deployment/orders") {
		t.Errorf("stderr %q does not say the intercept was left", errOut)
	}
}

// TestInterceptCommandNotStartedOnFailure: a failed intercept starts no CMD.
func TestInterceptCommandNotStartedOnFailure(t *testing.T) {
	svc := &cmdtest.FakeService{
		InterceptFunc: func(context.Context, daemon.InterceptRequest, func(string)) (daemon.InterceptInfo, error) {
			return daemon.InterceptInfo{}, errdefs.User("deployment/orders has no port named http")
		},
	}
	marker := filepath.Join(t.TempDir(), "ran")
	streams, _, _ := cmdtest.Streams()
	cmd := NewCmdIntercept(cmdtest.Factory(t, streams), func(ctx context.Context, o *InterceptOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, svc)
		return o.Run(ctx)
	})
	err := cmdtest.Exec(cmd, "orders", "--port", "http:3000", "--", "sh", "-c", "touch "+marker)
	cmdtest.WantError(t, err, cmdutil.ExitUser, "no port named http")
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("CMD ran although the intercept failed")
	}
}

// TestInterceptCommandEnv: --env gives CMD the intercepted pod's own
// variables (the run's ready event names the pod and container).
func TestInterceptCommandEnv(t *testing.T) {
	var envReq daemon.EnvRequest
	svc := &cmdtest.FakeService{
		InterceptFunc: func(ctx context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
			return daemon.InterceptInfo{Name: "deployment/orders", Namespace: "shop", Service: "orders", ServicePort: 80, LocalPort: 3000,
				Pods: []string{"orders-1"}}, nil
		},
		RunFunc: func(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error {
			ready(daemon.RunInfo{Pod: "orders-1", Container: "app", Namespace: "shop", HTTPAddr: "127.0.0.1:3128"})
			<-ctx.Done()
			return nil
		},
		EnvFunc: func(ctx context.Context, req daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error) {
			envReq = req
			return daemon.EnvResult{Pod: "orders-1", Container: "app", Source: daemon.EnvProcess,
				Vars: []daemon.EnvVar{{Name: "DB_URL", Value: "postgres://db/orders"}, {Name: "PATH", Value: "/image/bin"}}}, nil
		},
		LeaveFunc: func(ctx context.Context, namespace, name string) error { return nil },
	}
	streams, out, errOut := cmdtest.Streams()
	cmd := NewCmdIntercept(cmdtest.Factory(t, streams), func(ctx context.Context, o *InterceptOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, svc)
		o.Environ = func() []string { return []string{"PATH=" + os.Getenv("PATH")} }
		return o.Run(ctx)
	})
	if err := cmdtest.Exec(cmd, "orders", "--port", "http:3000", "--network", "proxy", "--env", "--", "sh", "-c", `echo "$DB_URL $PATH"`); err != nil {
		t.Fatal(err)
	}
	if want := "postgres://db/orders " + os.Getenv("PATH") + "\n"; out.String() != want {
		t.Errorf("CMD printed %q, want %q", out, want)
	}
	if envReq.Target != "pod/orders-1" || envReq.Container != "app" || envReq.Namespace != "shop" || envReq.Files {
		t.Errorf("env request %+v", envReq)
	}
	if !strings.Contains(errOut.String(), "kept this machine's PATH") {
		t.Errorf("stderr %q", errOut)
	}
}
