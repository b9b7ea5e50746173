// Package version implements `tether version`.
package version

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
)

// VersionOptions are the flags and dependencies of `tether version`.
type VersionOptions struct {
	genericiooptions.IOStreams

	ClientOnly bool
	Output     string
	// Timeout bounds the server query, so a dead cluster cannot hang the command.
	Timeout time.Duration

	// Discovery returns a client for the cluster's /version endpoint.
	Discovery func() (discovery.DiscoveryInterface, error)
	// Host names the API server, for the text output.
	Host func() (string, error)
}

// Versions is what `tether version` reports; -o json|yaml prints it as is.
type Versions struct {
	Client buildinfo.Info `json:"client"`
	Server *version.Info  `json:"server,omitempty"`
	// ServerHost is the API server that answered.
	ServerHost string `json:"serverHost,omitempty"`
	// ServerError says why the server version is missing, when it is.
	ServerError string `json:"serverError,omitempty"`
}

// NewCmdVersion returns the version command. runF, when set, replaces Run (tests).
func NewCmdVersion(f *cmdutil.Factory, runF func(context.Context, *VersionOptions) error) *cobra.Command {
	o := &VersionOptions{
		IOStreams: f.IOStreams,
		Timeout:   5 * time.Second,
		Discovery: func() (discovery.DiscoveryInterface, error) {
			return f.KubeConfig.ToDiscoveryClient()
		},
		Host: func() (string, error) {
			cfg, err := f.KubeConfig.ToRESTConfig()
			if err != nil {
				return "", err
			}
			return cfg.Host, nil
		},
	}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the tether version and, when a cluster is reachable, its version",
		Long: `Print tether's own version. When the current kube context's cluster answers
within --timeout, print its Kubernetes version too; an unreachable cluster is
reported, not an error, so this command also works offline.`,
		Example: `  tether version
  tether version --client
  kubectl tether version --context staging -o json`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "print only the client version; do not contact the cluster")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait for the cluster's answer")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete has nothing to resolve: the cluster is asked in Run, so that an
// unreachable one is reported rather than an error.
func (o *VersionOptions) Complete([]string) error { return nil }

// Validate checks the flags without I/O.
func (o *VersionOptions) Validate() error {
	if o.Timeout <= 0 {
		return errdefs.User("--timeout must be positive, got %s", o.Timeout)
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run gathers the versions and prints them.
func (o *VersionOptions) Run(ctx context.Context) error {
	v := Versions{Client: buildinfo.Get()}
	if !o.ClientOnly {
		o.fillServer(ctx, &v)
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, v)
	}
	fmt.Fprintf(o.Out, "Client: tether %s", v.Client.Version)
	if v.Client.Commit != "" {
		fmt.Fprintf(o.Out, " (commit %s)", v.Client.Commit)
	}
	fmt.Fprintf(o.Out, ", %s, %s\n", v.Client.GoVersion, v.Client.Platform)
	switch {
	case v.Server != nil:
		fmt.Fprintf(o.Out, "Server: Kubernetes %s at %s\n", v.Server.GitVersion, v.ServerHost)
	case v.ServerError != "":
		fmt.Fprintf(o.Out, "Server: not reachable: %s\n", v.ServerError)
		fmt.Fprintln(o.ErrOut, "hint: check --kubeconfig and --context; `tether version --client` skips the cluster")
	}
	return nil
}

func (o *VersionOptions) fillServer(ctx context.Context, v *Versions) {
	host, err := o.Host()
	if err != nil {
		v.ServerError = err.Error()
		return
	}
	v.ServerHost = host
	dc, err := o.Discovery()
	if err != nil {
		v.ServerError = err.Error()
		return
	}
	type result struct {
		info *version.Info
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		info, err := dc.ServerVersion()
		ch <- result{info, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			v.ServerError = r.err.Error()
			return
		}
		v.Server = r.info
	case <-time.After(o.Timeout):
		v.ServerError = fmt.Sprintf("no answer from %s within %s", host, o.Timeout)
	case <-ctx.Done():
		v.ServerError = ctx.Err().Error()
	}
}
