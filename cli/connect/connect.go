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
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Options of `tether connect`.
type Options struct {
	genericiooptions.IOStreams
	Output string

	Factory *cmdutil.Factory
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

// NewCmdConnect returns the connect command.
func NewCmdConnect(f *cmdutil.Factory) *cobra.Command {
	o := &Options{IOStreams: f.IOStreams, Factory: f}
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Start tether's daemon for the current kube context and check the cluster",
		Long: `Start the local daemon for the current kube context, if it is not running,
check that the cluster answers and that you may do what tether needs (one
SelfSubjectAccessReview per permission), and report what is missing.
Other commands connect on their own; run this to check a setup.`,
		Example: `  tether connect
  tether connect --context staging -n shop -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cmdutil.ValidateOutput(o.Output); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Run connects and reports.
func (o *Options) Run(ctx context.Context) error {
	start := time.Now()
	t, err := o.Factory.Target()
	if err != nil {
		return err
	}
	client, done, err := o.Factory.Daemon(ctx, true)
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
	rc, err := o.Factory.KubeConfig.ToRESTConfig()
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 50 // the access reviews go out at once
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	missing, err := access.Missing(ctx, cs, t.Namespace, access.Needed(access.Objects{}))
	if err != nil {
		return err
	}
	res := Result{Context: t.Context, Namespace: t.Namespace, Server: st.Server, ServerVersion: st.ServerVersion,
		DaemonPID: st.PID, Socket: t.Paths.Socket, Log: t.Paths.Log, Missing: []string{}, Took: time.Since(start)}
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
