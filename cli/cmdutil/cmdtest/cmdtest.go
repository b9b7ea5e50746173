package cmdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/server"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// Serve serves svc through the daemon's real gRPC adapter on a loopback
// listener and returns a client of it, so a command's test crosses the
// same wire (error classes, streaming, JSON fields) as the real daemon.
func Serve(t testing.TB, svc daemon.Service) daemon.Service {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	daemonv1.RegisterDaemonServer(srv, server.NewGRPCServer(svc))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return daemon.NewClient(conn)
}

// Daemon returns a DaemonService func that hands out svc.
func Daemon(svc daemon.Service) func(context.Context) (daemon.Service, func(), error) {
	return func(context.Context) (daemon.Service, func(), error) { return svc, func() {}, nil }
}

// ServeDaemon is Daemon(Serve(t, svc)).
func ServeDaemon(t testing.TB, svc daemon.Service) func(context.Context) (daemon.Service, func(), error) {
	return Daemon(Serve(t, svc))
}

// NoDaemon is a DaemonService func for a context where no daemon runs,
// failing as the Factory's does.
func NoDaemon(context.Context) (daemon.Service, func(), error) {
	return nil, nil, fmt.Errorf("%w (context test): `tether connect` starts one", cmdutil.ErrNoDaemon)
}

// Namespace returns a Namespace func that answers ns.
func Namespace(ns string) func() (string, error) {
	return func() (string, error) { return ns, nil }
}

// Streams returns test IO streams and the buffers behind Out and ErrOut.
func Streams() (genericiooptions.IOStreams, *bytes.Buffer, *bytes.Buffer) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	return streams, out, errOut
}

// Factory returns a Factory whose kube context "test" names namespace shop
// on a server nobody runs: enough to resolve names, never to reach a
// cluster. Its XDG_RUNTIME_DIR is a temporary folder.
func Factory(t testing.TB, streams genericiooptions.IOStreams) *cmdutil.Factory {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	kc := filepath.Join(dir, "kubeconfig")
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

// Exec runs cmd with args, its own output discarded (the options' streams
// are the test's), and returns its error.
func Exec(cmd *cobra.Command, args ...string) error {
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	return cmd.Execute()
}

// WantError fails t unless err exits with code and its message, as the
// user reads it, contains want. want "" with code ExitOK wants no error.
func WantError(t testing.TB, err error, code int, want string) {
	t.Helper()
	if got := cmdutil.ExitCode(err); got != code {
		t.Errorf("exit code %d (err: %v), want %d", got, err, code)
	}
	if want != "" && (err == nil || !strings.Contains(cmdutil.Message(err), want)) {
		t.Errorf("error %v, want it to say %q", err, want)
	}
}

// IgnoreDeps makes cmp compare options by their values: their streams and
// their dependencies (func fields) are left out.
var IgnoreDeps = cmp.FilterPath(func(p cmp.Path) bool {
	if p.Last().String() == ".IOStreams" {
		return true
	}
	t := p.Last().Type()
	return t != nil && t.Kind() == reflect.Func
}, cmp.Ignore())
