// Package run implements `tether run`.
package run

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/cli/internal/runcmd"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// RunOptions are the flags and dependencies of `tether run`.
type RunOptions struct {
	genericiooptions.IOStreams

	Target, Container, Network, AgentImage string
	// TunnelPath is --path: how the connections reach the agent (direct,
	// port-forward or auto).
	TunnelPath   string
	ForwardFlags []string
	Quiet        bool
	// Env and FilesDir are --env and --files: the target container's
	// variables and volume files for CMD.
	Env      bool
	FilesDir string

	// Filled by Complete.
	Ns       string
	Command  []string // CMD ARGS..., as written
	Path     string   // CMD found on PATH
	Forwards []runcmd.Forward
	// Dash is where `--` stood among the arguments (-1: nowhere).
	Dash int

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Environ is the environment CMD starts from (os.Environ).
	Environ func() []string
	// InNamespace runs --network namespace (nil: not built), after
	// CheckNamespace found nothing in its way.
	InNamespace    runcmd.NamespaceRunner
	CheckNamespace func() error
}

// NewCmdRun returns the run command; runF replaces Run in tests.
func NewCmdRun(f *cmdutil.Factory, runF func(context.Context, *RunOptions) error) *cobra.Command {
	o := &RunOptions{
		IOStreams:      f.IOStreams,
		DaemonService:  f.DaemonService(),
		Namespace:      f.Namespace(),
		Environ:        os.Environ,
		Dash:           -1,
		InNamespace:    runcmd.InNamespace,
		CheckNamespace: runcmd.CheckNamespace,
	}
	cmd := &cobra.Command{
		Use:   "run [WORKLOAD|pod/NAME] [-c CONTAINER] [--env] [--files DIR] [--forward svc/NAME:PORT[:LOCALPORT]]... -- CMD [ARGS...]",
		Short: "Run a local command as if it ran in a pod: the cluster's names and addresses, from inside the pod",
		Long: `Run CMD on this machine with its connections to the cluster leaving from
inside a pod: Service names resolve as in the pod (its search list and
ndots), ClusterIPs and pod IPs are reachable, and NetworkPolicies apply to
CMD as they apply to the pod. Nothing of this machine changes: no route, no
DNS setting, no root.

The connections are made by tether's agent in the pod: the sidecar when this
daemon intercepts the workload, else an inspection agent added to a ready pod
as an ephemeral container (the pod is not restarted, as for ` + "`tether trace`" + `).
Without a target, a small gateway Deployment of tether's agent is added to
the namespace (journaled: ` + "`tether rollback deployment/tether-gateway`" + ` removes
it) and the connections leave from there.

--network namespace (the default on Linux where it can run) runs CMD in
user, network and mount namespaces of its own, as you, with no root: its
TCP to the cluster's ranges and its DNS go through the pod, everything else
through this machine's network. --network proxy (any OS, and the fallback)
runs CMD with HTTP_PROXY, HTTPS_PROXY and ALL_PROXY set to proxies on
127.0.0.1 that only this run can use (the credentials are in the URLs),
NO_PROXY for loopback, JAVA_TOOL_OPTIONS for the JVM's SOCKS support and
NODE_USE_ENV_PROXY=1 for Node. Clients that ignore proxies (database
drivers) get --forward: a local port carried to a Service. In proxy mode,
all of CMD's proxied traffic leaves from the pod, not only the cluster's.

--env gives CMD the target container's environment as ` + "`tether env`" + ` reads
it, on top of CMD's own; PATH, HOME, JAVA_HOME and the other variables that
name the image's programs, paths or user stay this machine's (stderr names
them). --files DIR writes the container's ConfigMap, Secret, projected (the
service account token) and downwardAPI volumes under DIR/<mountPath>, 0600,
and sets TETHER_ROOT=DIR; in the namespace mode CMD also reads them at their
real paths, in its own mount namespace only. Both need a target.

CMD gets the terminal; Ctrl-C and SIGTERM reach CMD first, and tether
tears the run down once CMD exited, with CMD's exit status.`,
		Example: `  # curl a Service by its short name, as the pod would
  tether run deploy/orders -n shop -- curl -s http://payments/health

  # no workload to borrow: from the namespace's gateway
  tether run -n shop -- python3 client.py

  # the service itself, with the pod's environment and files
  tether run deploy/orders --env --files .tether/orders -- go run ./cmd/orders

  # a database driver that ignores proxies: a local port to the Service
  tether run deploy/orders --forward svc/postgres:5432:15432 -- ./orders --db localhost:15432`,
		Args: func(cmd *cobra.Command, args []string) error {
			o.Dash = cmd.ArgsLenAtDash()
			return nil
		},
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVarP(&o.Container, "container", "c", "", "the pod's container CMD runs as (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Network, "network", runcmd.NetworkAuto, "how CMD reaches the cluster: namespace (Linux) or proxy (any OS); default: namespace where it can run, else proxy")
	cmd.Flags().StringArrayVar(&o.ForwardFlags, "forward", nil, "svc/NAME:PORT[:LOCALPORT]: listen on 127.0.0.1:LOCALPORT and carry each connection to the Service from the pod (repeatable)")
	cmd.Flags().BoolVar(&o.Env, "env", false, "give CMD the target container's environment (as tether env reads it) on top of its own; PATH, HOME and the like stay this machine's")
	cmd.Flags().StringVar(&o.FilesDir, "files", "", "write the target container's ConfigMap, Secret, projected and downwardAPI volumes under `DIR`, set TETHER_ROOT=DIR; in the namespace mode CMD also sees them at their real paths")
	cmd.Flags().BoolVarP(&o.Quiet, "quiet", "q", false, "print nothing of tether's own on stderr")
	cmd.Flags().StringVar(&o.TunnelPath, "path", string(agent.PathAuto), "how the connections reach the pod's agent: direct (the pod connects to this machine over the pod network), port-forward (through the API server) or auto (direct when the pod can reach this machine, else port-forward)")
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image, when an inspection agent is added")
	return cmd
}

// Complete splits the arguments at `--`, finds CMD and resolves the
// namespace.
func (o *RunOptions) Complete(args []string) error {
	if o.Dash < 0 {
		if len(args) == 0 {
			return errdefs.User("no command: write `tether run WORKLOAD -- CMD [ARGS...]`")
		}
		return errdefs.User("put -- before the command, so that its flags stay its own: tether run %s -- CMD [ARGS...]", args[0])
	}
	before, after := args[:o.Dash], args[o.Dash:]
	if len(before) > 1 {
		return errdefs.User("one target before --, got %d (%v): WORKLOAD or pod/NAME", len(before), before)
	}
	if len(before) == 1 {
		o.Target = before[0]
	}
	o.Command = after
	if len(after) == 0 {
		return errdefs.User("no command after --: write `tether run %s -- CMD [ARGS...]`", o.Target)
	}
	path, err := runcmd.LookPath(after[0])
	if err != nil {
		return err
	}
	o.Path = path
	for _, v := range o.ForwardFlags {
		fw, err := runcmd.ParseForward(v)
		if err != nil {
			return err
		}
		o.Forwards = append(o.Forwards, fw)
	}
	if o.FilesDir != "" && o.Target != "" {
		if err := podfiles.CheckDir(o.FilesDir); err != nil {
			return err
		}
	}
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *RunOptions) Validate() error {
	if o.Target == "" && o.Container != "" {
		return errdefs.User("-c %s names a container of the target: name the target before -- (WORKLOAD or pod/NAME)", o.Container)
	}
	if o.Target == "" && (o.Env || o.FilesDir != "") {
		return errdefs.User("%s takes a target's container: name it before -- (tether run deploy/NAME %s -- CMD); the namespace's gateway has no environment of your app", podFlag(o.Env), podFlag(o.Env))
	}
	if err := runcmd.ValidNetwork(o.Network); err != nil {
		return err
	}
	if _, err := agent.ParsePath(o.TunnelPath); err != nil {
		return err
	}
	if o.AgentImage == "" {
		return errdefs.User("--agent-image must not be empty")
	}
	seen := map[int]bool{}
	for _, f := range o.Forwards {
		if seen[f.LocalPort] {
			return errdefs.User("--forward: local port %d is given twice", f.LocalPort)
		}
		seen[f.LocalPort] = true
	}
	return nil
}

// Run runs CMD in the run and returns its exit status as an error
// (cmdutil.ExitStatus) when it is not 0.
func (o *RunOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	code, err := runcmd.Run(ctx, runcmd.Config{
		Service: client,
		Request: daemon.RunRequest{Namespace: o.Ns, Target: o.Target, Container: o.Container, AgentImage: o.AgentImage,
			Path: o.TunnelPath},
		Network:        o.Network,
		InNamespace:    o.InNamespace,
		CheckNamespace: o.CheckNamespace,
		Forwards:       o.Forwards,
		PodEnv:         podEnv(client, runcmd.PodOptions{Env: o.Env, FilesDir: o.FilesDir, AgentImage: o.AgentImage, Quiet: o.Quiet, ErrOut: o.ErrOut}),
		Process: runcmd.Process{Path: o.Path, Args: o.Command, Env: o.Environ(), Stdin: o.In, Stdout: o.Out, Stderr: o.ErrOut,
			Interactive: runcmd.IsTerminal(o.In)},
		Quiet:  o.Quiet,
		ErrOut: o.ErrOut,
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return cmdutil.ExitStatus(code)
	}
	return nil
}

func podFlag(env bool) string {
	if env {
		return "--env"
	}
	return "--files"
}

// podEnv is the run's Config.PodEnv: nil when neither --env nor --files.
func podEnv(svc daemon.Service, o runcmd.PodOptions) func(context.Context, daemon.RunInfo) (runcmd.PodView, error) {
	if !o.Wanted() {
		return nil
	}
	return runcmd.FromPod(svc, o)
}
