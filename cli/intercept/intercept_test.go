package intercept

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/server"
	"github.com/tetherkube/tether/internal/errdefs"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// testFactory's kube context names namespace shop on a server nobody runs.
func testFactory(t *testing.T, streams genericiooptions.IOStreams) *cmdutil.Factory {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: test, context: {cluster: c, user: u, namespace: shop}}]
current-context: test
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kc
	return &cmdutil.Factory{IOStreams: streams, KubeConfig: flags, Flags: flags}
}

func TestNewCmdIntercept(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Options
		wantErr string
	}{
		{name: "named port", args: []string{"orders", "--port", "http:3000"},
			want: Options{Workload: "orders", ServicePort: "http", LocalPort: 3000, Namespace: "shop", RolloutTimeout: 3 * time.Minute}},
		{name: "number only", args: []string{"deploy/orders", "--port", "8080"},
			want: Options{Workload: "deploy/orders", ServicePort: "8080", LocalPort: 8080, Namespace: "shop", RolloutTimeout: 3 * time.Minute}},
		{name: "timeout", args: []string{"orders", "--port", "80:3000", "--rollout-timeout", "30s"},
			want: Options{Workload: "orders", ServicePort: "80", LocalPort: 3000, Namespace: "shop", RolloutTimeout: 30 * time.Second}},
		{name: "no port", args: []string{"orders"}, wantErr: "--port is required"},
		{name: "named without local", args: []string{"orders", "--port", "http"}, wantErr: "write --port http:LOCALPORT"},
		{name: "local not a number", args: []string{"orders", "--port", "http:x"}, wantErr: `local port "x" is not a number`},
		{name: "local out of range", args: []string{"orders", "--port", "http:0"}, wantErr: "local port 0 is out of range"},
		{name: "empty service port", args: []string{"orders", "--port", ":3000"}, wantErr: "no Service port before the colon"},
		{name: "bad timeout", args: []string{"orders", "--port", "80", "--rollout-timeout", "0s"}, wantErr: "--rollout-timeout must be positive"},
		{name: "bad output", args: []string{"orders", "--port", "80", "-o", "xml"}, wantErr: `unknown output format "xml"`},
		{name: "no workload", args: []string{"--port", "80"}, wantErr: "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _, _ := genericiooptions.NewTestIOStreams()
			var got *Options
			cmd := NewCmdIntercept(testFactory(t, streams), func(_ context.Context, o *Options) error {
				got = o
				return nil
			})
			cmd.SetArgs(tt.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotFlags := Options{Workload: got.Workload, ServicePort: got.ServicePort, LocalPort: got.LocalPort,
				Namespace: got.Namespace, RolloutTimeout: got.RolloutTimeout}
			if diff := cmp.Diff(tt.want, gotFlags); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.AgentImage != "docker.io/tetherkube/tether-agent:dev" {
				t.Errorf("default agent image = %q", got.AgentImage)
			}
		})
	}
}

// fakeDaemon is a daemon.Service whose Intercept answers as told.
type fakeDaemon struct {
	daemon.Service
	got  daemon.InterceptRequest
	info daemon.InterceptInfo
	err  error
}

func (f *fakeDaemon) Intercept(_ context.Context, req daemon.InterceptRequest, progress func(string)) (daemon.InterceptInfo, error) {
	f.got = req
	progress("adding the agent to deployment/orders")
	progress("waiting for 1/1 pods of deployment/orders to run the agent, 1s")
	return f.info, f.err
}

// serveFake serves f through the real gRPC adapter on loopback and returns a
// client of it.
func serveFake(t *testing.T, f *fakeDaemon) daemon.Service {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	daemonv1.RegisterDaemonServer(srv, server.NewGRPCServer(f))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return daemon.NewClient(conn)
}

func runAgainst(t *testing.T, f *fakeDaemon, output string) (string, string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	client := serveFake(t, f)
	o := &Options{
		IOStreams: streams, Workload: "orders", ServicePort: "http", LocalPort: 3000, Namespace: "shop",
		AgentImage: "img", RolloutTimeout: time.Minute, Output: output,
		Daemon: func(context.Context) (daemon.Service, func(), error) { return client, func() {}, nil },
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func TestRunAgainstDaemon(t *testing.T) {
	f := &fakeDaemon{info: daemon.InterceptInfo{Name: "deployment/orders", Namespace: "shop", Service: "orders",
		ServicePort: 80, AgentPort: 17000, LocalPort: 3000, Pods: []string{"orders-1", "orders-2"}}}
	out, errOut, err := runAgainst(t, f, "")
	if err != nil {
		t.Fatal(err)
	}
	wantReq := daemon.InterceptRequest{Namespace: "shop", Workload: "orders", ServicePort: "http", LocalPort: 3000, AgentImage: "img", RolloutTimeout: 60}
	if diff := cmp.Diff(wantReq, f.got); diff != "" {
		t.Errorf("request the daemon got (-want +got):\n%s", diff)
	}
	if !strings.Contains(out, "Intercepting deployment/orders in shop: service orders port 80 -> localhost:3000 (pods: orders-1, orders-2)") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "waiting for 1/1 pods") || strings.Contains(out, "waiting for") {
		t.Errorf("progress must go to stderr only; stderr:\n%s", errOut)
	}

	out, _, err = runAgainst(t, f, "json")
	if err != nil {
		t.Fatal(err)
	}
	var got daemon.InterceptInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.AgentPort != 17000 {
		t.Errorf("-o json: %v\n%s", err, out)
	}
}

func TestRunMapsDaemonErrors(t *testing.T) {
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
		_, _, err := runAgainst(t, &fakeDaemon{err: tt.err}, "")
		if code := cmdutil.ExitCode(err); code != tt.wantCode {
			t.Errorf("daemon error %q: exit code %d (err %v), want %d", tt.err, code, err, tt.wantCode)
		}
		if err == nil || !strings.Contains(cmdutil.Message(err), tt.wantMsg) {
			t.Errorf("daemon error %q reached the user as %v, want it to say %q", tt.err, err, tt.wantMsg)
		}
	}
}
