// Package intercept implements `tether intercept`.
package intercept

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/cli/internal/runcmd"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/localuser"
)

// InterceptOptions are the flags and dependencies of `tether intercept`.
type InterceptOptions struct {
	genericiooptions.IOStreams

	Workload       string
	Port           string // SVCPORT[:LOCALPORT]
	AgentImage     string
	RolloutTimeout time.Duration
	Output         string
	AgentResources AgentResourceFlags
	// TunnelPath is --path: how the tunnels carry the connections (direct,
	// port-forward or auto).
	TunnelPath string

	// Filled by Complete.
	Ns          string
	ServicePort string
	LocalPort   int
	// Command is CMD ARGS... after --: intercept for its lifetime only;
	// Path is CMD found on PATH.
	Command []string
	Path    string
	// Dash is where `--` stood among the arguments (-1: nowhere).
	Dash int

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Environ is the environment CMD starts from (os.Environ).
	Environ func() []string
	// Network is how CMD reaches the cluster (runcmd.NetworkProxy or
	// NetworkNamespace, which InNamespace runs; nil: not built).
	Network        string
	InNamespace    runcmd.NamespaceRunner
	CheckNamespace func() error
	// ForwardFlags are --forward's values, Forwards them parsed (with CMD).
	ForwardFlags []string
	Forwards     []runcmd.Forward
	// Env and FilesDir are --env and --files (with CMD): the intercepted
	// container's variables and volume files for CMD.
	Env      bool
	FilesDir string
	// HeaderFlags, PathPrefix, PathRegex and Mirror are the filter flags;
	// Filter them completed (a bare --http-header is x-tether-user=USER).
	HeaderFlags []string
	PathPrefix  string
	PathRegex   string
	Mirror      bool
	Filter      httpfilter.Spec
	// NoRestart is --no-restart: the agent joins the running pods as an
	// ephemeral container; no pod restarts.
	NoRestart bool
	// AgentIdle is --agent-idle (0: the agent's default).
	AgentIdle time.Duration
	// Passive is --passive: with --mirror, the agents first record from a
	// copy of the pods' packets and the mirror copies from them.
	Passive bool
	// User is the local user's name, for a bare --http-header.
	User func() string
}

// myHeader stands for a bare --http-header until Complete resolves it.
const myHeader = "\x00mine"

// UserHeader is the header a bare --http-header selects on.
const UserHeader = "x-tether-user"

// DefaultAgentImage is the agent image matching this build: a release
// (v1.2.3, or v0.0.0-COMMIT from `make dist`) names its own version, which
// the release's agent image tarball carries; other builds name :dev, the
// image the local cluster loads.
func DefaultAgentImage() string {
	v := buildinfo.Get().Version
	if regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(v) && len(v) <= 128 {
		return "docker.io/tetherkube/tether-agent:" + v
	}
	return "docker.io/tetherkube/tether-agent:dev"
}

// NewCmdIntercept returns the intercept command; runF replaces Run in tests.
func NewCmdIntercept(f *cmdutil.Factory, runF func(context.Context, *InterceptOptions) error) *cobra.Command {
	o := &InterceptOptions{
		IOStreams:      f.IOStreams,
		DaemonService:  f.DaemonService(),
		Namespace:      f.Namespace(),
		Environ:        os.Environ,
		Dash:           -1,
		InNamespace:    runcmd.InNamespace,
		CheckNamespace: runcmd.CheckNamespace,
		User:           localuser.Name,
	}
	cmd := &cobra.Command{
		Use:   "intercept WORKLOAD --port SVCPORT[:LOCALPORT] [-- CMD [ARGS...]]",
		Short: "Send a workload's traffic to a process on this machine",
		Long: `Send every connection that reaches a workload's Service port to a port on
this machine, until you run ` + "`tether leave`" + `.

tether adds its agent to the workload's pods (one rollout; every change is
journaled in the cluster first, so ` + "`tether rollback`" + ` restores it exactly),
moves the Service port's traffic to the agent, and opens a tunnel to every
ready pod through the API server: no network path into this machine is needed.
If this machine goes away, the agents send traffic to the app again within
2 seconds.

WORKLOAD is deploy/NAME, sts/NAME or NAME. SVCPORT is the Service port's
name or number; LOCALPORT defaults to SVCPORT's number.

Personal intercepts: with --http-header or --http-path only the HTTP
requests that match come here (per request on HTTP/1.1 keep-alive
connections, per stream on HTTP/2 cleartext and gRPC); everything else
goes to the app, so several people can intercept one workload at once,
each with their own header value. --http-header alone means
` + UserHeader + `=YOUR-USER-NAME. An intercept whose filter could take the
same request as someone else's is refused, naming them. Traffic that is not
cleartext HTTP (TLS included) goes to the app unfiltered. With --mirror the
app keeps answering every request and this machine gets a copy of each
matching one; its answers are recorded, not sent back. With --passive (or
on agents that ` + "`tether record --passive`" + ` added) the agents record from a copy
of the pods' packets, the copies come from those packets, and the Service
stays at the app: the callers pay no hop. The agents then run as root with
NET_RAW (Pod Security "baseline") and stay, recording, until rollback.

With --no-restart no pod restarts: the agent joins each running pod as an
ephemeral container, a pod is labelled tether.dev/intercept once its agent
answers, and the Service sends traffic only to labelled pods, on the
agent's port. The pod that was failing keeps its state, and the first
intercept is quick: it returns once the first pods' agents carry all of
the traffic, and the other pods join as their agents start (a recording,
a filter or a mirror waits for every pod). The trade-off: the agents get no resource requests or
limits (Kubernetes allows none on ephemeral containers), Kubernetes never
removes an ephemeral container (after leave or rollback it stays listed,
idle or terminated, until the pod is replaced), and while both this
machine's daemon and a pod's agent are dead, that pod's share of the
traffic is refused until ` + "`tether rollback`" + ` (docs/intercept.md).

With -- CMD, the intercept lasts as long as CMD: tether intercepts, runs CMD
as ` + "`tether run`" + ` does (its connections to the cluster leave from the
intercepted pod, through the intercept's agent), and leaves the intercept
when CMD exits, with CMD's exit status. Ctrl-C reaches CMD first. If the
intercept fails, CMD is not started.`,
		Example: `  # serve the orders Service's http port from localhost:3000
  tether intercept orders --port http:3000

  # port 8080 of the Service, to localhost:8080
  kubectl tether intercept deploy/orders -n shop --port 8080

  # intercept while the local build runs, then leave
  tether intercept orders --port http:3000 -- go run ./cmd/orders --listen :3000

  # always through the API server, even where the pods could reach this machine
  tether intercept orders --port http:3000 --path port-forward

  # only requests with x-tether-user: <your user name>; the rest go to the app
  tether intercept orders --port http:3000 --http-header
  curl -H "x-tether-user: $USER" http://orders.shop/api/orders

  # only /api/v2 requests of a test tenant, by a regular expression
  tether intercept orders --port http:3000 --http-header 'x-tenant=~test-.*' --http-path /api/v2/

  # a copy of every request, while the app serves them
  tether intercept orders --port http:3000 --mirror

  # the same, the copies taken from the pods' packets, out of the callers' path
  tether intercept orders --port http:3000 --mirror --passive

  # restart no pod: the agent joins the running pods as an ephemeral container
  tether intercept orders --port http:3000 --no-restart`,
		Args: cmdutil.Args(func(cmd *cobra.Command, args []string) error {
			o.Dash = cmd.ArgsLenAtDash()
			if o.Dash >= 0 {
				args = args[:o.Dash]
			}
			names, values := splitHeaderArgs(args)
			if len(values) > o.bareHeaders() {
				return fmt.Errorf("unexpected argument %q: a header filter goes with --http-header", values[o.bareHeaders()])
			}
			return cobra.ExactArgs(1)(cmd, names)
		}),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.Network, "network", runcmd.NetworkAuto, "with -- CMD: how CMD reaches the cluster, namespace (Linux) or proxy (any OS); default: namespace where it can run, else proxy")
	cmd.Flags().StringArrayVar(&o.ForwardFlags, "forward", nil, "with -- CMD: svc/NAME:PORT[:LOCALPORT], a local port carried to a Service from the pod, for clients that ignore proxies (repeatable)")
	cmd.Flags().BoolVar(&o.Env, "env", false, "with -- CMD: give CMD the intercepted container's environment (as tether env reads it) on top of its own; PATH, HOME and the like stay this machine's")
	cmd.Flags().StringVar(&o.FilesDir, "files", "", "with -- CMD: write the intercepted container's ConfigMap, Secret, projected and downwardAPI volumes under `DIR`, set TETHER_ROOT=DIR; in the namespace mode CMD also sees them at their real paths")
	cmd.Flags().StringVar(&o.TunnelPath, "path", string(agent.PathAuto), "how the tunnels to the agents carry the connections: direct (each pod connects to this machine over the pod network), port-forward (through the API server) or auto (direct where the pod can reach this machine, else port-forward)")
	cmd.Flags().StringVar(&o.Port, "port", "", "SVCPORT[:LOCALPORT]: the Service port (name or number) and the local port to send it to")
	cmd.Flags().StringArrayVar(&o.HeaderFlags, "http-header", nil, "`NAME=VALUE`, or NAME=~REGEX: only HTTP requests with that header come here (repeatable: all must match); alone: "+UserHeader+"=YOUR-USER-NAME")
	cmd.Flags().Lookup("http-header").NoOptDefVal = myHeader
	cmd.Flags().StringVar(&o.PathPrefix, "http-path", "", "only HTTP requests whose path starts with `PREFIX` come here")
	cmd.Flags().StringVar(&o.PathRegex, "http-path-regex", "", "only HTTP requests whose whole path matches `REGEX` come here")
	cmd.Flags().BoolVar(&o.NoRestart, "no-restart", false, "restart no pod: add the agent to the running pods as an ephemeral container and point the Service at the pods whose agent answers (see above for the trade-off)")
	cmd.Flags().DurationVar(&o.AgentIdle, "agent-idle", 0, "once nothing intercepts the agent for this long, it stops recording and the daemon points the Service back at the app, "+
		"leaving the agent in the pods for the next intercept (default 30m; set when the agent is added)")
	cmd.Flags().BoolVar(&o.Mirror, "mirror", false, "the app keeps answering every request; this machine gets a copy of each (matching) request, its answers dropped")
	cmd.Flags().BoolVar(&o.Passive, "passive", false, "with --mirror: the agents record from a copy of the pods' packets (as `tether record --passive`; they need NET_RAW) and the mirror copies from them, the Service sending callers straight to the app")
	AddAgentFlags(cmd, &o.AgentImage, &o.RolloutTimeout)
	o.AgentResources.AddFlags(cmd)
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// bareHeaders counts the --http-header flags given without a value.
func (o *InterceptOptions) bareHeaders() int {
	n := 0
	for _, h := range o.HeaderFlags {
		if h == myHeader {
			n++
		}
	}
	return n
}

// splitHeaderArgs tells WORKLOAD from NAME=VALUE arguments, which follow a
// bare --http-header written with a space (--http-header x-user=ana): a
// workload's name never holds "=".
func splitHeaderArgs(args []string) (names, values []string) {
	for _, a := range args {
		if strings.Contains(a, "=") {
			values = append(values, a)
		} else {
			names = append(names, a)
		}
	}
	return names, values
}

// completeFilter resolves the filter flags: each bare --http-header takes
// the next NAME=VALUE argument, else stands for x-tether-user=USER.
func (o *InterceptOptions) completeFilter(values []string) {
	o.Filter = httpfilter.Spec{PathPrefix: o.PathPrefix, PathRegex: o.PathRegex}
	for _, h := range o.HeaderFlags {
		if h == myHeader {
			if len(values) > 0 {
				h, values = values[0], values[1:]
			} else {
				h = UserHeader + "=" + o.User()
			}
		}
		o.Filter.Headers = append(o.Filter.Headers, h)
	}
}

// Complete takes WORKLOAD and CMD, the filter, splits --port and resolves
// the namespace.
func (o *InterceptOptions) Complete(args []string) error {
	before := args
	if o.Dash >= 0 {
		before = args[:o.Dash]
	}
	names, values := splitHeaderArgs(before)
	o.Workload = names[0]
	o.completeFilter(values)
	if o.Dash >= 0 {
		o.Command = args[o.Dash:]
		if len(o.Command) == 0 {
			return errdefs.User("no command after --: write `tether intercept %s --port ... -- CMD [ARGS...]`, or leave -- out", o.Workload)
		}
		path, err := runcmd.LookPath(o.Command[0])
		if err != nil {
			return err
		}
		o.Path = path
	}
	for _, v := range o.ForwardFlags {
		fw, err := runcmd.ParseForward(v)
		if err != nil {
			return err
		}
		o.Forwards = append(o.Forwards, fw)
	}
	if o.FilesDir != "" && len(o.Command) > 0 {
		if err := podfiles.CheckDir(o.FilesDir); err != nil {
			return err
		}
	}
	if o.Port == "" {
		return nil // Validate says what to write
	}
	svc, local, hasLocal := strings.Cut(o.Port, ":")
	o.ServicePort = svc
	if hasLocal {
		n, err := strconv.Atoi(local)
		if err != nil {
			return errdefs.User("--port %s: local port %q is not a number", o.Port, local)
		}
		o.LocalPort = n
	} else if n, err := strconv.Atoi(svc); err == nil {
		o.LocalPort = n
	} else {
		return errdefs.User("--port %s names the Service port but not the local port: write --port %s:LOCALPORT, e.g. --port %s:3000", o.Port, svc, svc)
	}
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *InterceptOptions) Validate() error {
	if o.Port == "" {
		return errdefs.User("--port is required: name the Service port and the local port, e.g. --port http:3000")
	}
	if o.ServicePort == "" {
		return errdefs.User("--port %s has no Service port before the colon", o.Port)
	}
	if o.LocalPort <= 0 || o.LocalPort > 65535 {
		return errdefs.User("local port %d is out of range 1-65535", o.LocalPort)
	}
	if err := ValidateAgent(o.AgentImage, o.RolloutTimeout); err != nil {
		return err
	}
	if _, err := agent.ParsePath(o.TunnelPath); err != nil {
		return err
	}
	if _, err := o.AgentResources.Resources(DefaultRecordBudget, ""); err != nil {
		return err
	}
	if o.AgentIdle < 0 || (o.AgentIdle > 0 && o.AgentIdle < time.Second) {
		return errdefs.User("--agent-idle %s: give a duration of 1s or more (default 30m)", o.AgentIdle)
	}
	if o.NoRestart && o.AgentIdle != 0 {
		return errdefs.User("--agent-idle is for the sidecar agent: an intercept --no-restart takes its agents out of the Service's path at leave")
	}
	if o.Passive && !o.Mirror {
		return errdefs.User("--passive makes a mirror copy from the pods' packets: add --mirror (an intercept that takes requests must be in the Service's path)")
	}
	if o.Passive && o.NoRestart {
		return errdefs.User("--passive and --no-restart: choose one (--no-restart's ephemeral agents work in the Service's path)")
	}
	if o.Passive && o.AgentIdle != 0 {
		return errdefs.User("--agent-idle and --passive: an agent that records from packets records until `tether rollback`; drop --agent-idle")
	}
	if o.NoRestart && o.AgentResources != (AgentResourceFlags{}) {
		return errdefs.User("--no-restart adds the agent as an ephemeral container, which Kubernetes allows no resources: " +
			"drop --agent-cpu and --agent-memory, or intercept without --no-restart")
	}
	if _, err := httpfilter.Parse(o.Filter); err != nil {
		return errdefs.User("%v (--http-header NAME=VALUE or NAME=~REGEX; --http-path /PREFIX; --http-path-regex REGEX)", err)
	}
	if len(o.Command) > 0 {
		if err := runcmd.ValidNetwork(o.Network); err != nil {
			return err
		}
	} else if len(o.Forwards) > 0 {
		return errdefs.User("--forward goes with -- CMD: it lasts as long as CMD runs (`tether run` gives it without an intercept)")
	} else if o.Env || o.FilesDir != "" {
		return errdefs.User("--env and --files go with -- CMD (tether intercept %s --port %s --env -- CMD); without a command, `tether env %s -f .env --files DIR` writes them for your own run", o.Workload, o.Port, o.Workload)
	}
	if len(o.Command) > 0 && o.Output != "" && o.Output != cmdutil.OutputText {
		return errdefs.User("-o %s and -- CMD do not mix: CMD's output is what stdout carries", o.Output)
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run asks the daemon for the intercept, showing its progress.
func (o *InterceptOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, _ := o.AgentResources.Resources(DefaultRecordBudget, "") // checked in Validate
	info, err := client.Intercept(ctx, daemon.InterceptRequest{
		Namespace: o.Ns, Workload: o.Workload, ServicePort: o.ServicePort, LocalPort: o.LocalPort,
		AgentImage: o.AgentImage, RolloutTimeout: int64(o.RolloutTimeout / time.Second), AgentResources: res,
		LocalPortLater: len(o.Command) > 0, Filter: o.Filter, Mirror: o.Mirror, Path: o.TunnelPath,
		NoRestart: o.NoRestart, AgentIdle: o.AgentIdle, Passive: o.Passive,
	}, func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	if len(o.Command) > 0 {
		return o.runCommand(ctx, client, info)
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, info)
	}
	fmt.Fprintf(o.Out, "%s\nStop with: tether leave %s -n %s\n", Describe(info), info.Name, info.Namespace)
	return nil
}

// Describe says in one line what an intercept sends where.
func Describe(info daemon.InterceptInfo) string {
	verb, what := "Intercepting", ""
	f, _ := httpfilter.Parse(info.Filter)
	switch {
	case info.Mirror && info.Filter.IsZero():
		verb, what = "Mirroring", ", copies of every request (the app still answers)"
	case info.Mirror:
		verb, what = "Mirroring", ", copies of the requests with "+f.String()+" (the app still answers)"
	case !info.Filter.IsZero():
		what = ", requests with " + f.String()
	}
	return fmt.Sprintf("%s %s in %s: service %s port %d%s -> localhost:%d (pods: %s)",
		verb, info.Name, info.Namespace, info.Service, info.ServicePort, what, info.LocalPort, info.PodsAndPaths())
}

// runCommand runs CMD in the intercepted pod's network, then leaves the
// intercept, whatever CMD's end; CMD's exit status is returned as a
// cmdutil.ExitStatus.
func (o *InterceptOptions) runCommand(ctx context.Context, client daemon.Service, info daemon.InterceptInfo) (err error) {
	fmt.Fprintf(o.ErrOut, "%s while %s runs\n", Describe(info), o.Command[0])
	defer func() {
		// CMD is done (or never started): leave even when Ctrl-C ended ctx.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if lerr := client.Leave(lctx, info.Namespace, info.Name); lerr != nil {
			fmt.Fprintf(o.ErrOut, "tether: leave %s: %v; run `tether leave %s -n %s`\n", info.Name, lerr, info.Name, info.Namespace)
			if err == nil {
				err = lerr
			}
			return
		}
		fmt.Fprintf(o.ErrOut, "left the intercept of %s\n", info.Name)
	}()
	cfg := runcmd.Config{
		Service:        client,
		Request:        daemon.RunRequest{Namespace: info.Namespace, Target: info.Name, AgentImage: o.AgentImage, Path: o.TunnelPath},
		Network:        o.Network,
		InNamespace:    o.InNamespace,
		CheckNamespace: o.CheckNamespace,
		Forwards:       o.Forwards,
		Process: runcmd.Process{Path: o.Path, Args: o.Command, Env: o.Environ(), Stdin: o.In, Stdout: o.Out, Stderr: o.ErrOut,
			Interactive: runcmd.IsTerminal(o.In)},
		ErrOut: o.ErrOut,
	}
	if o.Env || o.FilesDir != "" {
		cfg.PodEnv = runcmd.FromPod(client, runcmd.PodOptions{Env: o.Env, FilesDir: o.FilesDir, AgentImage: o.AgentImage, ErrOut: o.ErrOut})
	}
	code, err := runcmd.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if code != 0 {
		return cmdutil.ExitStatus(code)
	}
	return nil
}
