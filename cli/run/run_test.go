package run

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/runcmd"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/localsock"
)

func mustLook(t *testing.T, name string) string {
	p, err := runcmd.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewCmdRun(t *testing.T) {
	sh := mustLook(t, "sh")
	tests := []struct {
		name    string
		args    []string
		want    RunOptions
		wantErr string
	}{
		{name: "defaults", args: []string{"deploy/orders", "--", "sh", "-c", "true"},
			want: RunOptions{Target: "deploy/orders", Ns: "shop", Command: []string{"sh", "-c", "true"}, Path: sh, Dash: 1}},
		{name: "every flag", args: []string{"pod/orders-1", "-c", "app", "--network", "proxy", "-q", "--agent-image", "img",
			"--forward", "svc/db:5432", "--forward", "svc/cache:6379:16379", "--path", "direct", "--", "sh", "-x"},
			want: RunOptions{Target: "pod/orders-1", Container: "app", Network: "proxy", Quiet: true, AgentImage: "img", Ns: "shop", TunnelPath: "direct",
				ForwardFlags: []string{"svc/db:5432", "svc/cache:6379:16379"},
				Forwards:     []runcmd.Forward{{Service: "db", Port: "5432", LocalPort: 5432}, {Service: "cache", Port: "6379", LocalPort: 16379}},
				Command:      []string{"sh", "-x"}, Path: sh, Dash: 1}},
		{name: "no -- before CMD", args: []string{"deploy/orders", "sh"}, wantErr: "put -- before the command"},
		{name: "nothing", args: []string{}, wantErr: "no command"},
		{name: "nothing after --", args: []string{"deploy/orders", "--"}, wantErr: "no command after --"},
		{name: "CMD not found", args: []string{"deploy/orders", "--", "no-such-program-tether"}, wantErr: `CMD "no-such-program-tether"`},
		{name: "no target: the gateway", args: []string{"--", "sh"},
			want: RunOptions{Ns: "shop", Command: []string{"sh"}, Path: sh, Dash: 0}},
		{name: "-c without a target", args: []string{"-c", "app", "--", "sh"}, wantErr: "-c app names a container of the target"},
		{name: "two targets", args: []string{"a", "b", "--", "sh"}, wantErr: "one target before --"},
		{name: "unknown mode", args: []string{"deploy/orders", "--network", "vpn", "--", "sh"}, wantErr: `--network "vpn": want proxy or namespace`},
		{name: "unknown path", args: []string{"deploy/orders", "--path", "vpn", "--", "sh"}, wantErr: `--path "vpn": want direct, port-forward or auto`},
		{name: "bad forward", args: []string{"deploy/orders", "--forward", "deploy/db:5432", "--", "sh"}, wantErr: "only Services can be forwarded"},
		{name: "forward port named without local port", args: []string{"deploy/orders", "--forward", "svc/db:pg", "--", "sh"}, wantErr: "PORT pg is a name: give LOCALPORT too"},
		{name: "forward twice on a port", args: []string{"deploy/orders", "--forward", "svc/db:5432", "--forward", "svc/db2:5432", "--", "sh"},
			wantErr: "local port 5432 is given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *RunOptions
			cmd := NewCmdRun(cmdtest.Factory(t, streams), func(_ context.Context, o *RunOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				if got != nil {
					t.Error("Run was called")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.AgentImage == "" {
				tt.want.AgentImage = intercept.DefaultAgentImage()
			}
			if tt.want.TunnelPath == "" {
				tt.want.TunnelPath = "auto"
			}
			if diff := cmp.Diff(tt.want, *got, cmdtest.IgnoreDeps); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeRun answers Run with info, records the request, and holds the run
// until the caller ends it.
func fakeRun(info daemon.RunInfo, got *daemon.RunRequest, ended chan<- struct{}) *cmdtest.FakeService {
	return &cmdtest.FakeService{RunFunc: func(ctx context.Context, req daemon.RunRequest, progress func(string), ready func(daemon.RunInfo)) error {
		*got = req
		progress("adding the agent")
		ready(info)
		<-ctx.Done()
		if ended != nil {
			close(ended)
		}
		return nil
	}}
}

func runCmd(t *testing.T, svc daemon.Service, args ...string) (string, string, error) {
	t.Helper()
	streams, out, errOut := cmdtest.Streams()
	f := cmdtest.Factory(t, streams)
	cmd := NewCmdRun(f, func(ctx context.Context, o *RunOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, svc)
		o.Environ = func() []string { return []string{"PATH=" + os.Getenv("PATH"), "HTTP_PROXY=http://old", "KEEP=1"} }
		return o.Run(ctx)
	})
	err := cmdtest.Exec(cmd, args...)
	return out.String(), errOut.String(), err
}

func TestRunEnvironmentAndExitStatus(t *testing.T) {
	info := daemon.RunInfo{ID: "r1", Namespace: "shop", Pod: "orders-1", Container: "app", HTTPAddr: "127.0.0.1:3128", Path: "direct",
		SOCKSAddr: "127.0.0.1:1080", ProxyUsername: "tether", ProxyPassword: "pw", ServiceCIDRs: []string{"10.43.0.0/16"}}
	var req daemon.RunRequest
	ended := make(chan struct{})
	out, errOut, err := runCmd(t, fakeRun(info, &req, ended), "deploy/orders", "-c", "app", "--network", "proxy", "--",
		"sh", "-c", `echo "$HTTP_PROXY|$https_proxy|$ALL_PROXY|$NO_PROXY|$NODE_USE_ENV_PROXY|$TETHER_POD|$TETHER_NAMESPACE|$KEEP|$JAVA_TOOL_OPTIONS"; exit 7`)
	cmdtest.WantError(t, err, 7, "")
	if cmdutil.Message(err) != "" {
		t.Errorf("tether adds %q to CMD's own exit", cmdutil.Message(err))
	}
	want := "http://tether:pw@127.0.0.1:3128|http://tether:pw@127.0.0.1:3128|socks5h://tether:pw@127.0.0.1:1080|localhost,127.0.0.1,::1|1|orders-1|shop|1|" +
		"-DsocksProxyHost=127.0.0.1 -DsocksProxyPort=1080 -Djava.net.socks.username=tether -Djava.net.socks.password=pw -Duser.name=pw\n"
	if out != want {
		t.Errorf("CMD saw\n%q\nwant\n%q", out, want)
	}
	if !strings.Contains(errOut, "running sh -c") || !strings.Contains(errOut, "as if in pod orders-1 (namespace shop, direct) via proxy 127.0.0.1:3128") {
		t.Errorf("stderr %q does not say where CMD runs", errOut)
	}
	if diff := cmp.Diff(daemon.RunRequest{Namespace: "shop", Target: "deploy/orders", Container: "app", AgentImage: intercept.DefaultAgentImage(), Proxy: true,
		Path: "auto"}, req); diff != "" {
		t.Errorf("request (-want +got)\n%s", diff)
	}
	<-ended // the run was ended once CMD exited
}

// TestRunNamespaceUnavailable: when the namespace mode cannot run here
// (netns.Check's answer) or is not built in, it is refused with the fix
// before the daemon is asked for anything.
func TestRunNamespaceUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*RunOptions)
		want string
	}{
		{"the machine cannot", func(o *RunOptions) {
			o.CheckNamespace = func() error {
				return errdefs.User("this machine has no /dev/net/tun: load the module with `sudo modprobe tun`; meanwhile `--network proxy` works")
			}
		}, "no /dev/net/tun: load the module"},
		{"not built in", func(o *RunOptions) { o.InNamespace = nil }, "--network namespace is not built yet: use --network proxy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			cmd := NewCmdRun(cmdtest.Factory(t, streams), func(ctx context.Context, o *RunOptions) error {
				o.DaemonService = cmdtest.ServeDaemon(t, &cmdtest.FakeService{})
				tt.edit(o)
				return o.Run(ctx)
			})
			err := cmdtest.Exec(cmd, "deploy/orders", "--network", "namespace", "--", "sh")
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		})
	}
}

func TestRunQuietAndSignalStatus(t *testing.T) {
	var req daemon.RunRequest
	_, errOut, err := runCmd(t, fakeRun(daemon.RunInfo{Pod: "p"}, &req, nil), "deploy/orders", "-q", "--network", "proxy", "--", "sh", "-c", "kill -TERM $$")
	cmdtest.WantError(t, err, 128+15, "")
	if errOut != "" {
		t.Errorf("-q printed %q", errOut)
	}
}

func TestRunFailsBeforeCMD(t *testing.T) {
	svc := &cmdtest.FakeService{RunFunc: func(context.Context, daemon.RunRequest, func(string), func(daemon.RunInfo)) error {
		return errdefs.User("pod p has no container \"x\"; containers: app")
	}}
	marker := filepath.Join(t.TempDir(), "ran")
	_, _, err := runCmd(t, svc, "deploy/orders", "--network", "proxy", "--", "sh", "-c", "touch "+marker)
	cmdtest.WantError(t, err, cmdutil.ExitUser, `pod p has no container "x"`)
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("CMD ran although the run failed")
	}
}

// TestRunForward: a client that ignores proxies reaches the Service
// through --forward, carried over the dial socket.
func TestRunForward(t *testing.T) {
	curl := mustLook(t, "curl")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from the service") }))
	defer backend.Close()
	dir := filepath.Join(t.TempDir(), "tether")
	if err := localsock.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	sock := daemon.DialSocketFor(filepath.Join(dir, "d.sock"))
	l, err := localsock.Listen(sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var dialed []string
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go daemon.ServeDialConn(context.Background(), c, func(ctx context.Context, id, addr string) (net.Conn, error) {
				dialed = append(dialed, id+" "+addr)
				return net.Dial("tcp", backend.Listener.Addr().String())
			})
		}
	}()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	var req daemon.RunRequest
	// The port by name: the daemon answers it as a number.
	out, _, err := runCmd(t, fakeRun(daemon.RunInfo{ID: "r9", Pod: "p", DialSocket: sock, Services: []string{"db:5432"}}, &req, nil),
		"deploy/orders", "--network", "proxy", "--forward", fmt.Sprintf("svc/db:postgres:%d", port), "--", curl, "-s", "--noproxy", "*", fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	if out != "from the service" {
		t.Errorf("curl got %q", out)
	}
	if diff := cmp.Diff([]string{"r9 db:5432"}, dialed); diff != "" {
		t.Errorf("dialed (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff([]string{"db:postgres"}, req.Services); diff != "" {
		t.Errorf("services checked by the daemon (-want +got)\n%s", diff)
	}
}

// TestRunNamespaceSeam: --network namespace runs CMD through the
// NamespaceRunner plugged in, with the run (no proxies) and the pod's
// identity, and returns its status.
func TestRunNamespaceSeam(t *testing.T) {
	var req daemon.RunRequest
	svc := fakeRun(daemon.RunInfo{ID: "r1", Pod: "orders-1", Namespace: "shop", DialSocket: "/x.sock",
		ServiceCIDRs: []string{"10.43.0.0/16"}}, &req, nil)
	streams, _, _ := cmdtest.Streams()
	var gotInfo daemon.RunInfo
	var gotEnv []string
	cmd := NewCmdRun(cmdtest.Factory(t, streams), func(ctx context.Context, o *RunOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, svc)
		o.Environ = func() []string { return []string{"KEEP=1"} }
		o.InNamespace = func(ctx context.Context, sess *runcmd.Session, p runcmd.Process) (int, error) {
			gotInfo, gotEnv = sess.Info, p.Env
			return 3, nil
		}
		o.CheckNamespace = func() error { return nil }
		return o.Run(ctx)
	})
	err := cmdtest.Exec(cmd, "deploy/orders", "--network", "namespace", "--", "sh")
	cmdtest.WantError(t, err, 3, "")
	if req.Proxy {
		t.Error("the namespace mode asked for proxies")
	}
	if gotInfo.ID != "r1" || gotInfo.DialSocket != "/x.sock" {
		t.Errorf("the runner got %+v", gotInfo)
	}
	env := strings.Join(gotEnv, " ")
	if !strings.Contains(env, "TETHER_NETWORK=namespace") || !strings.Contains(env, "TETHER_POD=orders-1") ||
		!strings.Contains(env, "KEEP=1") || strings.Contains(env, "HTTP_PROXY") {
		t.Errorf("CMD's environment: %s", env)
	}
}

func TestNewCmdRunPodFlags(t *testing.T) {
	sh := mustLook(t, "sh")
	dir := filepath.Join(t.TempDir(), "pod-files")
	notDir := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    RunOptions
		wantErr string
	}{
		{name: "--env --files", args: []string{"deploy/orders", "--env", "--files", dir, "--", "sh"},
			want: RunOptions{Target: "deploy/orders", Env: true, FilesDir: dir, Ns: "shop", Command: []string{"sh"}, Path: sh, Dash: 1}},
		{name: "--env without a target", args: []string{"--env", "--", "sh"}, wantErr: "--env takes a target's container: name it before --"},
		{name: "--files without a target", args: []string{"--files", dir, "--", "sh"}, wantErr: "--files takes a target's container"},
		{name: "--files under a file", args: []string{"deploy/orders", "--files", filepath.Join(notDir, "x"), "--", "sh"}, wantErr: "is not a folder"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name    string
			args    []string
			want    RunOptions
			wantErr string
		}{name: "--files unwritable", args: []string{"deploy/orders", "--files", filepath.Join(ro, "d"), "--", "sh"}, wantErr: "name a folder you can write to"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *RunOptions
			cmd := NewCmdRun(cmdtest.Factory(t, streams), func(_ context.Context, o *RunOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				if got != nil {
					t.Error("Run was called")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.AgentImage = intercept.DefaultAgentImage()
			tt.want.TunnelPath = "auto"
			if diff := cmp.Diff(tt.want, *got, cmdtest.IgnoreDeps); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("checking --files made %s", dir)
	}
}

// podEnvService is fakeRun plus an Env that answers for pod orders-1's
// container app only, and records what it was asked.
func podEnvService(t *testing.T, got *daemon.EnvRequest) *cmdtest.FakeService {
	var req daemon.RunRequest
	svc := fakeRun(daemon.RunInfo{ID: "r1", Namespace: "shop", Pod: "orders-1", Container: "app", HTTPAddr: "127.0.0.1:3128",
		SOCKSAddr: "127.0.0.1:1080", ProxyUsername: "tether", ProxyPassword: "pw", DialSocket: "/x.sock"}, &req, nil)
	svc.EnvFunc = func(ctx context.Context, r daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error) {
		*got = r
		if r.Target != "pod/orders-1" || r.Container != "app" {
			return daemon.EnvResult{}, errdefs.User("not the run's pod: %s -c %s", r.Target, r.Container)
		}
		return daemon.EnvResult{Pod: "orders-1", Container: "app", Source: daemon.EnvProcess,
			Vars: []daemon.EnvVar{
				{Name: "PATH", Value: "/image/bin"}, {Name: "HOME", Value: "/root"}, {Name: "JAVA_HOME", Value: "/opt/jdk"},
				{Name: "DB_URL", Value: "postgres://db:5432/orders"}, {Name: "API_KEY", Value: "s3cret", Secret: true},
				{Name: "KEEP", Value: "from-pod"}},
			Files: []daemon.EnvFile{
				{Path: "/var/run/secrets/kubernetes.io/serviceaccount/token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", Data: []byte("tok"), Secret: true},
				{Path: "/etc/orders/app.yaml", MountPath: "/etc/orders", Data: []byte("port: 8080\n")}},
			NotCopied: []daemon.EnvMount{{MountPath: "/data", Kind: "persistentVolumeClaim", Volume: "data", Reason: "not a config volume"}},
		}, nil
	}
	return svc
}

// TestRunPodEnvProxy: --env and --files in the proxy mode give CMD the
// run's own pod's variables (PATH and HOME stay the machine's), the files
// under TETHER_ROOT with mode 0600, and say so on stderr.
func TestRunPodEnvProxy(t *testing.T) {
	var envReq daemon.EnvRequest
	dir := filepath.Join(t.TempDir(), "pod")
	out, errOut, err := runCmd(t, podEnvService(t, &envReq), "deploy/orders", "--network", "proxy", "--env", "--files", dir, "--",
		"sh", "-c", `echo "$DB_URL|$API_KEY|$KEEP|$HOME|${JAVA_HOME-unset}|$TETHER_ROOT|$HTTP_PROXY"; cat "$TETHER_ROOT/etc/orders/app.yaml"; echo "$PATH"`)
	if err != nil {
		t.Fatalf("%v; stderr %s", err, errOut)
	}
	lines := strings.Split(out, "\n")
	// No HOME here, and not the pod's either.
	want := "postgres://db:5432/orders|s3cret|from-pod||unset|" + dir + "|http://tether:pw@127.0.0.1:3128"
	if lines[0] != want || lines[1] != "port: 8080" || lines[2] != os.Getenv("PATH") {
		t.Errorf("CMD saw\n%s\nwant\n%s\nport: 8080\n%s", out, want, os.Getenv("PATH"))
	}
	if diff := cmp.Diff(daemon.EnvRequest{Namespace: "shop", Target: "pod/orders-1", Container: "app", Source: daemon.EnvAuto,
		Files: true, AgentImage: intercept.DefaultAgentImage()}, envReq); diff != "" {
		t.Errorf("env request (-want +got)\n%s", diff)
	}
	st, err := os.Stat(filepath.Join(dir, "var/run/secrets/kubernetes.io/serviceaccount/token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v", st, err)
	}
	for _, s := range []string{"--env: 3 variables of pod orders-1's container app", "kept this machine's PATH, HOME, JAVA_HOME",
		"--files: wrote 2 files", "not copied: /data (persistentVolumeClaim volume data)",
		"the proxy mode cannot show the files at their real paths (/etc/orders, /var/run/secrets/kubernetes.io/serviceaccount): CMD finds them under $TETHER_ROOT"} {
		if !strings.Contains(errOut, s) {
			t.Errorf("stderr %q lacks %q", errOut, s)
		}
	}
}

// TestRunPodEnvNamespace: in the namespace mode, the runner gets the
// volumes to mount at their real paths.
func TestRunPodEnvNamespace(t *testing.T) {
	var envReq daemon.EnvRequest
	dir := filepath.Join(t.TempDir(), "pod")
	streams, _, errOut := cmdtest.Streams()
	var got runcmd.Process
	cmd := NewCmdRun(cmdtest.Factory(t, streams), func(ctx context.Context, o *RunOptions) error {
		o.DaemonService = cmdtest.ServeDaemon(t, podEnvService(t, &envReq))
		o.Environ = func() []string { return []string{"PATH=/local/bin"} }
		o.InNamespace = func(ctx context.Context, sess *runcmd.Session, p runcmd.Process) (int, error) {
			got = p
			return 0, nil
		}
		o.CheckNamespace = func() error { return nil }
		return o.Run(ctx)
	})
	if err := cmdtest.Exec(cmd, "deploy/orders", "--network", "namespace", "-q", "--env", "--files", dir, "--", "sh"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"/var/run/secrets/kubernetes.io/serviceaccount": filepath.Join(dir, "var/run/secrets/kubernetes.io/serviceaccount"),
		"/etc/orders": filepath.Join(dir, "etc/orders"),
	}
	if diff := cmp.Diff(want, got.Mounts); diff != "" {
		t.Errorf("mounts (-want +got)\n%s", diff)
	}
	env := strings.Join(got.Env, " ")
	if !strings.Contains(env, "PATH=/local/bin") || !strings.Contains(env, "DB_URL=postgres://db:5432/orders") || !strings.Contains(env, "TETHER_ROOT="+dir) {
		t.Errorf("CMD's environment: %s", env)
	}
	if errOut.String() != "" {
		t.Errorf("-q printed %q", errOut)
	}
}

// TestRunPodEnvFails: when the pod's environment cannot be read, CMD does
// not run and the run is ended.
func TestRunPodEnvFails(t *testing.T) {
	var envReq daemon.EnvRequest
	svc := podEnvService(t, &envReq)
	svc.EnvFunc = func(context.Context, daemon.EnvRequest, func(string)) (daemon.EnvResult, error) {
		return daemon.EnvResult{}, errdefs.User("container app has ended")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	_, _, err := runCmd(t, svc, "deploy/orders", "--network", "proxy", "--env", "--", "sh", "-c", "touch "+marker)
	cmdtest.WantError(t, err, cmdutil.ExitUser, "read pod orders-1's environment: container app has ended")
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Error("CMD ran without the environment")
	}
}
