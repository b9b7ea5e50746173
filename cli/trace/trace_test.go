package trace

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/server"
	"github.com/tetherkube/tether/internal/errdefs"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// fakeDaemon is a daemon.Service whose Trace answers as told.
type fakeDaemon struct {
	daemon.Service
	got daemon.TraceRequest
	rep daemon.TraceReport
	err error
}

func (f *fakeDaemon) Trace(_ context.Context, req daemon.TraceRequest, progress func(string)) (daemon.TraceReport, error) {
	f.got = req
	progress("adding the agent to pod client")
	return f.rep, f.err
}

// run serves f through the real gRPC adapter on loopback and runs the
// command's Run against it.
func run(t *testing.T, f *fakeDaemon, output string) (string, string, error) {
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
	client := daemon.NewClient(conn)
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	o := &Options{IOStreams: streams, From: "deploy/client", To: "svc/orders", AgentImage: "img", Output: output, Namespace: "shop",
		Daemon: func(context.Context) (daemon.Service, func(), error) { return client, func() {}, nil }}
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	err = o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func report(broken bool) daemon.TraceReport {
	rep := daemon.TraceReport{Conclusion: "path healthy", DurationMillis: 812}
	rep.Source.Pod, rep.Source.Namespace = "client-1", "shop"
	rep.Target.Input = "svc/orders"
	rep.Steps = []daemon.TraceStep{
		{Name: "dns", Status: daemon.TraceOK, Summary: "orders resolves to 10.43.0.7", Details: []string{"resolv.conf: nameserver 10.43.0.10"}},
		{Name: "service", Status: daemon.TraceOK, Summary: "service shop/orders 10.43.0.7:80 -> 1 ready endpoint"},
	}
	if broken {
		rep.Steps[1].Status, rep.Steps[1].Summary = daemon.TraceBroken, "service shop/orders has no ready endpoint"
		rep.FirstBroken, rep.Conclusion = "service", "broken at service: service shop/orders has no ready endpoint"
	}
	return rep
}

func TestRunPrintsReport(t *testing.T) {
	f := &fakeDaemon{rep: report(false)}
	out, errOut, err := run(t, f, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.TraceRequest{Namespace: "shop", From: "deploy/client", To: "svc/orders", AgentImage: "img"}, f.got); diff != "" {
		t.Errorf("request (-want +got)\n%s", diff)
	}
	want := `trace from pod shop/client-1 to svc/orders

  ok      dns      orders resolves to 10.43.0.7
                     resolv.conf: nameserver 10.43.0.10
  ok      service  service shop/orders 10.43.0.7:80 -> 1 ready endpoint

path healthy (traced in 812ms)
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got)\n%s", diff)
	}
	if !strings.Contains(errOut, "adding the agent") {
		t.Errorf("progress not relayed: %q", errOut)
	}
}

func TestRunBrokenPathExits3(t *testing.T) {
	out, _, err := run(t, &fakeDaemon{rep: report(true)}, "json")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitFailed {
		t.Fatalf("exit code %d (%v), want %d", code, err, cmdutil.ExitFailed)
	}
	var got daemon.TraceReport
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(report(true), got); diff != "" {
		t.Errorf("report through the daemon's wire and -o json (-want +got)\n%s", diff)
	}
}

func TestRunMapsErrors(t *testing.T) {
	_, _, err := run(t, &fakeDaemon{err: errdefs.User(`no pod "nope" in namespace shop`)}, "")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUser || !strings.Contains(err.Error(), `no pod "nope"`) {
		t.Errorf("user error: exit %d, %v", code, err)
	}
	_, _, err = run(t, &fakeDaemon{err: errors.New("tunnel broke")}, "")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitInternal {
		t.Errorf("internal error: exit %d, %v", code, err)
	}
	_, _, err = run(t, &fakeDaemon{}, "xml")
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUser {
		t.Errorf("-o xml: exit %d, %v", code, err)
	}
}
