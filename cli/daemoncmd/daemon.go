// Package daemoncmd implements the hidden `tether daemon run`, the process
// `tether connect` starts in the background.
package daemoncmd

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon/server"
)

// NewCmdDaemon returns `tether daemon`.
func NewCmdDaemon(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run tether's local daemon (started for you by `tether connect`)",
		Long: `The daemon keeps one kube context's connections, tunnels and intercepts
while commands come and go. Every command that needs it starts it in the
background; ` + "`tether quit`" + ` stops it and ` + "`tether logs`" + ` prints its log.`,
		Example: `  tether daemon run --context staging`,
		Hidden:  true,
	}
	cmd.AddCommand(NewCmdRun(f, nil))
	return cmd
}

// RunOptions are the dependencies of `tether daemon run`.
type RunOptions struct {
	// Log receives the daemon's JSON log (its stderr, which the starting
	// command points at the context's log file).
	Log io.Writer

	// Kube is the kube context and daemon paths Complete resolved.
	Kube cmdutil.Target

	// AgentProfileDir, when set (TETHER_PROFILE_DIR, `make bench
	// PROFILE=1`), makes the daemon profile every agent it links to and
	// write agent-POD.*.pprof there, beside its own profiles.
	AgentProfileDir string

	Target     func() (cmdutil.Target, error)
	RESTConfig func() (*rest.Config, error)
}

// NewCmdRun returns `tether daemon run`; runF replaces Run in tests.
func NewCmdRun(f *cmdutil.Factory, runF func(context.Context, *RunOptions) error) *cobra.Command {
	o := &RunOptions{Log: f.IOStreams.ErrOut, Target: f.Target, RESTConfig: f.KubeConfig.ToRESTConfig,
		AgentProfileDir: os.Getenv("TETHER_PROFILE_DIR")}
	return &cobra.Command{
		Use:   "run",
		Short: "Serve the daemon API for the current kube context until `tether quit`",
		Long: `Serve the daemon API on the kube context's socket until ` + "`tether quit`" + ` or a
signal. Commands start it for you, in the background, logging to the file
` + "`tether logs`" + ` prints; run it by hand only to watch its log.`,
		Example: `  tether daemon run --context staging`,
		Args:    cmdutil.Args(cobra.NoArgs),
		RunE:    cmdutil.RunE(o, runF),
	}
}

// Complete resolves the kube context and the daemon's paths.
func (o *RunOptions) Complete([]string) error {
	t, err := o.Target()
	if err != nil {
		return err
	}
	o.Kube = t
	return nil
}

// Validate has nothing to check: the command takes no flags of its own.
func (o *RunOptions) Validate() error { return nil }

// Run serves the daemon until ctx ends or a client asks it to quit.
func (o *RunOptions) Run(ctx context.Context) error {
	t := o.Kube
	if err := t.Paths.EnsureDir(); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(o.Log, nil)).With("context", t.Context)
	klog.SetSlogLogger(log.With("source", "client-go"))
	rc, err := o.RESTConfig()
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 300
	if os.Getenv("GOMAXPROCS") == "" && runtime.NumCPU() <= 2 {
		// One P on a machine of two CPUs. An intercepted message crosses
		// goroutines (yamux's receive loop, the copy, yamux's send loop);
		// with an idle P each hand-off wakes another thread that spins
		// looking for work, on the CPUs the developer's app, the agent's
		// pod and the callers need. Measured on 2 cores, interleaved
		// against two Ps (notes, session 17): an intercepted request over
		// the direct path 1.63-2.61x a pod -> pod request against
		// 2.36-2.72x, lower in 6 of 6 pairs; over port-forward level, its
		// bulk 1.01-1.20x the raw port-forward against 0.93-1.33x;
		// `tether run`'s keep-alive p50 0.65-0.67x the raw port-forward
		// against 0.84x on the direct path, its 128 MiB up and down no
		// slower. Not measured on more CPUs, where Go's default stands.
		runtime.GOMAXPROCS(1)
	}
	d, err := server.New(rc, t.Context, log)
	if err != nil {
		return err
	}
	if o.AgentProfileDir != "" {
		d.ProfileAgents(o.AgentProfileDir)
	}
	log.Info("daemon starting", "pid", os.Getpid(), "server", rc.Host, "procs", runtime.GOMAXPROCS(0))
	return server.Serve(ctx, d, t.Paths.Socket)
}
