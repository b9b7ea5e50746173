// Package doctor implements `tether doctor`: it checks, before anyone
// loses an hour, that the cluster, the namespace, the user's permissions,
// the agent image and this machine let tether work, and says how to fix
// what does not.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/netns"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/portforward"
)

// Status is a check's outcome.
type Status string

// The statuses: only StatusFail makes doctor exit 3.
const (
	StatusOK      Status = "ok"
	StatusWarn    Status = "warn"
	StatusFail    Status = "fail"
	StatusSkipped Status = "skipped"
)

// Result is one check's outcome.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix is the command or document that fixes it, when not ok.
	Fix string `json:"fix,omitempty"`
}

// DoctorOptions are the flags and dependencies of `tether doctor`.
type DoctorOptions struct {
	genericiooptions.IOStreams

	Output     string
	AgentImage string
	SkipImage  bool

	// ImageTimeout bounds the wait for the test pod to start (its image
	// pulled); CheckTimeout bounds each other check.
	ImageTimeout, CheckTimeout time.Duration
	// progressEvery is how often the wait for the test pod is reported
	// on stderr (5 s; tests shorten it).
	progressEvery time.Duration

	// Filled by Complete.
	Kube   cmdutil.Target
	client kubernetes.Interface

	ResolveTarget func() (cmdutil.Target, error)
	KubeClient    func() (kubernetes.Interface, error)
	// DialPod opens a port-forward to a pod's port (the seam tests fake).
	DialPod func(ctx context.Context, namespace, pod string, port int) (net.Conn, error)
	// RunningDaemon reaches the context's daemon if one runs; it never
	// starts one.
	RunningDaemon func(ctx context.Context) (daemon.Service, func(), error)
	// GOOS and HostCheck are this machine, for `tether run`'s namespace
	// mode (netns.Check on Linux).
	GOOS      string
	HostCheck func() error
	Now       func() time.Time
}

// NewCmdDoctor returns the doctor command; runF replaces Run in tests.
func NewCmdDoctor(f *cmdutil.Factory, runF func(context.Context, *DoctorOptions) error) *cobra.Command {
	o := &DoctorOptions{
		IOStreams:     f.IOStreams,
		ImageTimeout:  60 * time.Second,
		CheckTimeout:  10 * time.Second,
		ResolveTarget: f.Target,
		KubeClient:    kubeClient(f),
		DialPod:       dialPod(f),
		RunningDaemon: f.RunningDaemon(),
		GOOS:          runtime.GOOS,
		HostCheck:     netns.Check,
		Now:           time.Now,
	}
	cmd := &cobra.Command{
		Use:   "doctor [-n NAMESPACE] [-o json] [--skip-image]",
		Short: "Check that the cluster, the namespace, your permissions, the agent image and this machine let tether work",
		Long: `Check what tether needs, each check with ok, warn, fail or skipped, one
line of detail and, when not ok, the fix:

  kube context          the cluster answers (its version) and runs Kubernetes
                        1.25 or later (ephemeral containers are GA there;
                        tether is tested on 1.32)
  ephemeral containers  the API serves pods/ephemeralcontainers, where trace,
                        capture, dns, env and run add their agent
  permissions: FEATURE  for each feature (intercept, record, requests and
                        replay, rollback, trace/capture/dns, env, run's
                        gateway) what you may not do in the namespace
                        (SelfSubjectAccessReviews), with docs/intercept.md's
                        Roles as the fix
  pod security          the namespace's pod-security.kubernetes.io levels
                        (enforce, warn, audit) and which tether features the
                        enforced level blocks, from the security contexts
                        tether's agents ask for (capture's agent runs as root
                        for NET_RAW: "restricted" blocks it); where you may
                        create pods, confirmed by a server-side dry run of
                        each agent's pod (nothing is created), which also
                        catches a cluster-wide default or another policy
  agent image           a short-lived pod (label tether.dev/doctor) runs the
                        agent image tether would use (--agent-image, as for
                        intercept) and proves it starts; always deleted.
                        Skipped with a warning when you may not create pods,
                        or with --skip-image
  port-forward          through the API server's port-forward to that pod,
                        the tunnel handshake with its agent: port-forward and
                        the agent work together
  leftovers             journals (ConfigMaps labelled tether.dev/journal)
                        while no daemon runs for this context, workloads with
                        tether's agent and no journal, test pods an
                        interrupted doctor left (deleted)
  run on this machine   for tether run's namespace mode: user namespaces
                        allowed (AppArmor's restriction detected) and
                        /dev/net/tun usable; skipped outside Linux

Checks run concurrently, each bounded (10 s; the test pod's start 60 s,
with progress on stderr). Exit status: 3 when a check fails, 0 otherwise
(warnings included), 2 for bad flags.

doctor itself needs get, create and delete on pods and get, create on
pods/portforward for the image and port-forward checks, and list on
configmaps, deployments, statefulsets and pods for the leftovers (the
tether-doctor Role in docs/intercept.md).`,
		Example: `  tether doctor
  tether doctor -n shop -o json
  tether doctor --agent-image registry.example.com/tether-agent:v1.2.0`,
		Args:              cmdutil.Args(cobra.NoArgs),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image to check (as intercept's --agent-image)")
	cmd.Flags().BoolVar(&o.SkipImage, "skip-image", false, "do not start the test pod: skip the image and port-forward checks")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// kubeClient is the Factory's clientset with room for the access reviews,
// which go out at once, and a bound on every request.
func kubeClient(f *cmdutil.Factory) func() (kubernetes.Interface, error) {
	return func() (kubernetes.Interface, error) {
		rc, err := f.KubeConfig.ToRESTConfig()
		if err != nil {
			return nil, errdefs.User("no usable kube context (%v): set KUBECONFIG or pass --kubeconfig/--context", err)
		}
		rc.QPS, rc.Burst = 50, 100
		rc.Timeout = 10 * time.Second
		return kubernetes.NewForConfig(rc)
	}
}

func dialPod(f *cmdutil.Factory) func(context.Context, string, string, int) (net.Conn, error) {
	return func(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
		rc, err := f.KubeConfig.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		d, err := portforward.NewDialer(rc)
		if err != nil {
			return nil, err
		}
		return d.DialPod(ctx, namespace, pod, port)
	}
}

// Complete resolves the kube context and namespace and builds the client.
func (o *DoctorOptions) Complete([]string) error {
	t, err := o.ResolveTarget()
	if err != nil {
		return err
	}
	o.Kube = t
	cs, err := o.KubeClient()
	if err != nil {
		return err
	}
	o.client = cs
	return nil
}

// Validate checks the options without I/O.
func (o *DoctorOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if !o.SkipImage && strings.TrimSpace(o.AgentImage) == "" {
		return errdefs.User("--agent-image must not be empty (or pass --skip-image)")
	}
	if strings.ContainsAny(o.AgentImage, " \t\n") {
		return errdefs.User("--agent-image %q: an image reference has no spaces, e.g. docker.io/tetherkube/tether-agent:v1.2.0", o.AgentImage)
	}
	return nil
}

// Run runs every check, prints the results and fails (exit 3) when one
// failed.
func (o *DoctorOptions) Run(ctx context.Context) error {
	results := o.Check(ctx)
	if err := ctx.Err(); err != nil {
		return errdefs.Mark(errdefs.ErrCanceled, fmt.Errorf("doctor interrupted: %w", err))
	}
	if o.Output != cmdutil.OutputText {
		if err := cmdutil.PrintStructured(o.Out, o.Output, results); err != nil {
			return err
		}
	} else {
		printTable(o.Out, results)
	}
	var failed []string
	for _, r := range results {
		if r.Status == StatusFail {
			failed = append(failed, r.Check)
		}
	}
	if len(failed) > 0 {
		return errdefs.FailedCheck("%d of %d checks failed: %s", len(failed), len(results), strings.Join(failed, ", "))
	}
	return nil
}

// Check runs every check and returns the results in a fixed order: the
// kube context first (the others need it), the rest concurrently.
func (o *DoctorOptions) Check(ctx context.Context) []Result {
	var local []Result
	localDone := make(chan struct{})
	go func() { defer close(localDone); local = []Result{o.checkHost()} }()

	first, answers := o.checkContext(ctx)
	out := []Result{first}
	if !answers {
		for _, name := range []string{"ephemeral containers", "permissions", "pod security", "agent image", "port-forward", "leftovers"} {
			out = append(out, Result{Check: name, Status: StatusSkipped, Detail: "the cluster does not answer"})
		}
	} else {
		checks := []func(context.Context) []Result{
			func(ctx context.Context) []Result { return []Result{o.checkEphemeral(ctx)} },
			o.checkPermissions,
			func(ctx context.Context) []Result { return []Result{o.checkPodSecurity(ctx)} },
			o.checkTestPod,
			o.checkLeftovers,
		}
		slots := make([][]Result, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Add(1)
			go func() { defer wg.Done(); slots[i] = c(ctx) }()
		}
		wg.Wait()
		for _, s := range slots {
			out = append(out, s...)
		}
	}
	<-localDone
	return append(out, local...)
}

// printTable writes the results for people.
func printTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL\tFIX")
	for _, r := range results {
		fix := r.Fix
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Check, r.Status, oneLine(r.Detail), oneLine(fix))
	}
	tw.Flush()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
