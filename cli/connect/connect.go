// Package connect implements `tether connect`.
package connect

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// ConnectOptions are the flags and dependencies of `tether connect`.
type ConnectOptions struct {
	genericiooptions.IOStreams

	Output string

	// Kube is the kube context, server, namespace and daemon paths
	// Complete resolved.
	Kube cmdutil.Target

	Target        func() (cmdutil.Target, error)
	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	// MissingAccess returns what tether needs and may not do in namespace.
	MissingAccess func(ctx context.Context, namespace string) ([]access.Rule, error)
	Now           func() time.Time
}

// Result is what connect reports.
type Result struct {
	Context       string        `json:"context"`
	Namespace     string        `json:"namespace"`
	Server        string        `json:"server"`
	ServerVersion string        `json:"serverVersion"`
	DaemonPID     int           `json:"daemonPid"`
	Socket        string        `json:"socket"`
	Log           string        `json:"log"`
	Missing       []string      `json:"missingPermissions"`
	Took          time.Duration `json:"tookNanoseconds"`
}

// NewCmdConnect returns the connect command; runF replaces Run in tests.
func NewCmdConnect(f *cmdutil.Factory, runF func(context.Context, *ConnectOptions) error) *cobra.Command {
	o := &ConnectOptions{
		IOStreams:     f.IOStreams,
		Target:        f.Target,
		DaemonService: f.DaemonService(),
		MissingAccess: missingAccess(f),
		Now:           time.Now,
	}
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Start tether's daemon for the current kube context and check the cluster",
		Long: `Start the local daemon for the current kube context, if it is not running,
check that the cluster answers and that you may do what tether needs (one
SelfSubjectAccessReview per permission), and report what is missing.
Other commands connect on their own; run this to check a setup.`,
		Example: `  tether connect
  tether connect --context staging -n shop -o json`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// missingAccess asks the cluster, with the user's credentials, what of
// tether's needs they may not do.
func missingAccess(f *cmdutil.Factory) func(context.Context, string) ([]access.Rule, error) {
	return func(ctx context.Context, namespace string) ([]access.Rule, error) {
		rc, err := f.KubeConfig.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		rc.QPS, rc.Burst = 50, 50 // the access reviews go out at once
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		return access.Missing(ctx, cs, namespace, access.Needed(access.Objects{}))
	}
}

// Complete resolves the kube context, namespace and daemon paths.
func (o *ConnectOptions) Complete([]string) error {
	t, err := o.Target()
	if err != nil {
		return err
	}
	o.Kube = t
	return nil
}

// Validate checks the options without I/O.
func (o *ConnectOptions) Validate() error { return cmdutil.ValidateOutput(o.Output) }

// Run connects and reports.
func (o *ConnectOptions) Run(ctx context.Context) error {
	start := o.Now()
	t := o.Kube
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	st, err := client.Status(ctx)
	if err != nil {
		return err
	}
	if st.ServerVersion == "" {
		return errdefs.User("the cluster at %s does not answer; check --context and your network (daemon log: %s)", t.Server, t.Paths.Log)
	}
	missing, err := o.MissingAccess(ctx, t.Namespace)
	if err != nil {
		return err
	}
	res := Result{Context: t.Context, Namespace: t.Namespace, Server: st.Server, ServerVersion: st.ServerVersion,
		DaemonPID: st.PID, Socket: t.Paths.Socket, Log: t.Paths.Log, Missing: []string{}, Took: o.Now().Sub(start)}
	for _, r := range missing {
		res.Missing = append(res.Missing, r.String())
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, res)
	}
	fmt.Fprintf(o.Out, "Connected to context %s (%s, Kubernetes %s) in %s\n", res.Context, res.Server, res.ServerVersion, res.Took.Round(time.Millisecond))
	fmt.Fprintf(o.Out, "Namespace: %s\nDaemon: pid %d, socket %s\n", res.Namespace, res.DaemonPID, res.Socket)
	if len(missing) > 0 {
		fmt.Fprintf(o.Out, "\nYou may not do everything tether needs in namespace %s. Missing:\n%s", t.Namespace, access.Describe(missing))
		fmt.Fprintln(o.Out, "Ask for the Role in docs/intercept.md.")
	}
	return nil
}
