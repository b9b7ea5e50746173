// Package record implements `tether record`.
package record

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// RecordOptions are the flags and dependencies of `tether record`.
type RecordOptions struct {
	genericiooptions.IOStreams

	Workload, ServicePort, AgentImage, Output string
	Redact                                    []string
	NoRedact                                  bool
	BodyCap, Budget                           string
	RolloutTimeout                            time.Duration
	AgentResources                            intercept.AgentResourceFlags
	// NoRestart is --no-restart: the agent joins the running pods as an
	// ephemeral container; the recording lasts until `tether leave`.
	NoRestart bool
	// Passive is --passive: record from a copy of the pods' packets, the
	// Service sending to the app.
	Passive bool

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

// NewCmdRecord returns the record command; runF replaces Run in tests.
func NewCmdRecord(f *cmdutil.Factory, runF func(context.Context, *RecordOptions) error) *cobra.Command {
	o := &RecordOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
	}
	cmd := &cobra.Command{
		Use:   "record WORKLOAD --port PORT",
		Short: "Record the HTTP requests a workload's port receives, without intercepting them",
		Long: `Put tether's agent in front of a workload's Service port so that it keeps the
recent HTTP requests and their responses (HTTP/1.1 and HTTP/2 cleartext,
gRPC included), while passing every byte to the app unchanged. Then list,
show, export and replay them with ` + "`tether requests`" + ` and ` + "`tether replay`" + `.

The agent keeps at most --budget bytes (the oldest exchanges go first) and
--body-cap bytes of each body. Authorization, Cookie, Set-Cookie and
Proxy-Authorization are redacted, and so are the headers and JSON fields
named with --redact; --no-redact records secrets as seen and must be asked
for explicitly. An intercept records too, but pauses once nothing has
intercepted for its idle time; record on a workload whose agent an
intercept added restarts that agent once, to record until rollback with
the flags given here.

The change is journaled in the cluster like an intercept's;
` + "`tether rollback WORKLOAD`" + ` removes the agent.

With --no-restart no pod restarts: the agent joins each running pod as an
ephemeral container and the Service is pointed at the pods whose agent
answers, as ` + "`tether intercept --no-restart`" + ` does (docs/intercept.md). The
daemon follows the recording (new pods get an agent) until
` + "`tether leave WORKLOAD`" + ` or ` + "`tether quit`" + `, which restore the Service; the agents stay, idle, and
their recordings stay readable until the pods are replaced.

With --passive the agent records from a copy of the pods' packets instead
of in the connections' path: once it runs, the Service is pointed back at
the app, so callers pay nothing for the recording (no hop; the kernel
copies each packet to the agent). The agent then needs the NET_RAW
capability: it runs as root with the runtime's default capabilities, as
` + "`tether capture`" + `'s agent does, which the "baseline" Pod Security level
allows and "restricted" does not (` + "`tether doctor`" + ` says what the namespace
allows). Connections open before the agent started, and those
whose packets the kernel dropped under load, are not recorded
(` + "`tether status`" + ` counts them), and nor are the kubelet's probes of the app. An
intercept still points the Service at the agents while it lasts.`,
		Example: `  tether record deploy/orders --port http
  tether record orders --port 80 --redact password,x-api-key
  tether record orders --port http --no-restart
  tether record orders --port http --passive`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.ServicePort, "port", "", "the Service port to record, by name or number (required)")
	cmd.Flags().StringSliceVar(&o.Redact, "redact", nil, "also redact these header and JSON field names (comma-separated, repeatable)")
	cmd.Flags().BoolVar(&o.NoRedact, "no-redact", false, "record Authorization, Cookie and the like as seen (secrets!)")
	cmd.Flags().StringVar(&o.BodyCap, "body-cap", "1Mi", "most of each body kept; longer bodies are truncated and marked")
	cmd.Flags().StringVar(&o.Budget, "budget", "64Mi", "memory for recorded exchanges per pod; the oldest go first")
	cmd.Flags().BoolVar(&o.NoRestart, "no-restart", false, "restart no pod: add the agent to the running pods as an ephemeral container (until `tether leave`; see above)")
	cmd.Flags().BoolVar(&o.Passive, "passive", false, "record from a copy of the pods' packets, the Service sending to the app: callers pay nothing (the agent needs NET_RAW; see above)")
	intercept.AddAgentFlags(cmd, &o.AgentImage, &o.RolloutTimeout)
	o.AgentResources.AddFlags(cmd)
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes WORKLOAD and resolves the namespace.
func (o *RecordOptions) Complete(args []string) error {
	o.Workload = args[0]
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *RecordOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if o.ServicePort == "" {
		return errdefs.User("--port is required: the Service port to record, e.g. --port http or --port 80")
	}
	if o.NoRedact && len(o.Redact) > 0 {
		return errdefs.User("--redact and --no-redact contradict each other: choose one")
	}
	for _, n := range o.Redact {
		if strings.TrimSpace(n) == "" || strings.ContainsAny(n, " :") {
			return errdefs.User("--redact %q: give header or JSON field names, e.g. --redact password,x-api-key", n)
		}
	}
	if _, err := size("--body-cap", o.BodyCap); err != nil {
		return err
	}
	b, err := size("--budget", o.Budget)
	if err != nil {
		return err
	}
	c, _ := size("--body-cap", o.BodyCap)
	if b < 1<<20 || c > b/2 {
		return errdefs.User("--budget must be at least 1Mi and --body-cap at most half of it (got %s and %s)", o.Budget, o.BodyCap)
	}
	if err := intercept.ValidateAgent(o.AgentImage, o.RolloutTimeout); err != nil {
		return err
	}
	if _, err := o.AgentResources.Resources(int64(b), "--budget"); err != nil {
		return err
	}
	if o.NoRestart && o.Passive {
		return errdefs.User("--passive and --no-restart: choose one (--no-restart's ephemeral agents record in the Service's path)")
	}
	if o.NoRestart && o.AgentResources != (intercept.AgentResourceFlags{}) {
		return errdefs.User("--no-restart adds the agent as an ephemeral container, which Kubernetes allows no resources: " +
			"drop --agent-cpu and --agent-memory, or record without --no-restart")
	}
	return nil
}

func size(flag, v string) (int, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() < 0 || q.Value() > 1<<40 {
		return 0, errdefs.User("%s %q: write a size such as 512Ki, 1Mi or 64Mi", flag, v)
	}
	return int(q.Value()), nil
}

// Run asks the daemon for the recording agent.
func (o *RecordOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	bodyCap, _ := size("--body-cap", o.BodyCap)
	budget, _ := size("--budget", o.Budget)
	res, _ := o.AgentResources.Resources(int64(budget), "--budget") // checked in Validate
	info, err := client.Record(ctx, daemon.RecordRequest{Namespace: o.Ns, Workload: o.Workload, ServicePort: o.ServicePort,
		AgentImage: o.AgentImage, RolloutTimeout: int64(o.RolloutTimeout.Seconds()), Redact: o.Redact, NoRedact: o.NoRedact,
		BodyCap: bodyCap, Budget: budget, AgentResources: res, NoRestart: o.NoRestart, Passive: o.Passive}, func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, info)
	}
	fmt.Fprintf(o.Out, "recording %s (service/%s port %d) in namespace %s\n", info.Workload, info.Service, info.ServicePort, info.Namespace)
	if o.NoRedact {
		fmt.Fprintln(o.Out, "WARNING: redaction is off: secrets (Authorization, Cookie, ...) are recorded as seen")
	}
	stop := "tether rollback"
	if o.NoRestart {
		stop = "tether leave"
	}
	fmt.Fprintf(o.Out, "list what it records:  tether requests list %s\nstop recording:        %s %s\n", info.Workload, stop, info.Workload)
	return nil
}
