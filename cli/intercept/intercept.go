// Package intercept implements `tether intercept`.
package intercept

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
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

	// Filled by Complete.
	Ns          string
	ServicePort string
	LocalPort   int

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

// DefaultAgentImage is the agent image matching this build.
func DefaultAgentImage() string {
	v := buildinfo.Get().Version
	if regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(v) {
		return "docker.io/tetherkube/tether-agent:" + v
	}
	return "docker.io/tetherkube/tether-agent:dev"
}

// NewCmdIntercept returns the intercept command; runF replaces Run in tests.
func NewCmdIntercept(f *cmdutil.Factory, runF func(context.Context, *InterceptOptions) error) *cobra.Command {
	o := &InterceptOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
	}
	cmd := &cobra.Command{
		Use:   "intercept WORKLOAD --port SVCPORT[:LOCALPORT]",
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
name or number; LOCALPORT defaults to SVCPORT's number.`,
		Example: `  # serve the orders Service's http port from localhost:3000
  tether intercept orders --port http:3000

  # port 8080 of the Service, to localhost:8080
  kubectl tether intercept deploy/orders -n shop --port 8080`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.Port, "port", "", "SVCPORT[:LOCALPORT]: the Service port (name or number) and the local port to send it to")
	AddAgentFlags(cmd, &o.AgentImage, &o.RolloutTimeout)
	o.AgentResources.AddFlags(cmd)
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD, splits --port and resolves the namespace.
func (o *InterceptOptions) Complete(args []string) error {
	o.Workload = args[0]
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
	if _, err := o.AgentResources.Resources(DefaultRecordBudget, ""); err != nil {
		return err
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
	}, func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, info)
	}
	fmt.Fprintf(o.Out, "Intercepting %s in %s: service %s port %d -> localhost:%d (pods: %s)\nStop with: tether leave %s -n %s\n",
		info.Name, info.Namespace, info.Service, info.ServicePort, info.LocalPort, strings.Join(info.Pods, ", "), info.Name, info.Namespace)
	return nil
}
