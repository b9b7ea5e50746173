// Package requests implements `tether requests`: list and show the HTTP
// exchanges a workload's agents recorded.
package requests

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// WorkloadOptions are what every requests subcommand shares: the
// workload, its namespace, the output format and the daemon.
type WorkloadOptions struct {
	genericiooptions.IOStreams

	Workload, Output string

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

func newWorkloadOptions(f *cmdutil.Factory) WorkloadOptions {
	return WorkloadOptions{IOStreams: f.IOStreams, DaemonService: f.DaemonService(), Namespace: f.Namespace()}
}

// complete takes the workload and resolves the namespace.
func (o *WorkloadOptions) complete(workload string) error {
	o.Workload = workload
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// validate checks the shared options without I/O.
func (o *WorkloadOptions) validate() error {
	if strings.TrimSpace(o.Workload) == "" {
		return errdefs.User("name the workload whose agents recorded, e.g. deploy/orders")
	}
	return cmdutil.ValidateOutput(o.Output)
}

// FilterFlags select recorded exchanges: --status, --method, --path,
// --since and --limit. ` + "`tether replay`" + ` takes them too.
type FilterFlags struct {
	Status, Method, Path string
	Since                time.Duration
	Limit                int
}

// AddFilterFlags registers the filter flags on cmd.
func AddFilterFlags(cmd *cobra.Command, f *FilterFlags) {
	cmd.Flags().StringVar(&f.Status, "status", "", "a status (404) or class (5xx)")
	cmd.Flags().StringVar(&f.Method, "method", "", "an HTTP method")
	cmd.Flags().StringVar(&f.Path, "path", "", "a path prefix, e.g. /orders")
	cmd.Flags().DurationVar(&f.Since, "since", 0, "only requests of the last DURATION, e.g. 10m")
	cmd.Flags().IntVar(&f.Limit, "limit", 0, "only the newest N (0: all)")
}

// Validate checks the filter flags without I/O.
func (f FilterFlags) Validate() error {
	_, err := f.Filter(time.Time{})
	return err
}

// Filter builds the recording filter, --since counted back from now.
func (f FilterFlags) Filter(now time.Time) (recording.Filter, error) {
	rf := recording.Filter{Status: f.Status, Method: f.Method, PathPrefix: f.Path}
	if err := rf.Validate(); err != nil {
		return rf, errdefs.User("--%v", err)
	}
	if f.Since < 0 {
		return rf, errdefs.User("--since must be a positive duration such as 10m")
	}
	if f.Since > 0 {
		rf.Since = now.Add(-f.Since)
	}
	if f.Limit < 0 {
		return rf, errdefs.User("--limit must not be negative")
	}
	return rf, nil
}

// NewCmdRequests returns the requests command and its subcommands.
func NewCmdRequests(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "List and show the HTTP requests tether's agents recorded",
		Long: `The agent in front of a workload (put there by ` + "`tether record`" + ` or an intercept)
keeps the recent HTTP exchanges it forwarded. These commands read them from
every pod of the workload, oldest first.

An exchange is named POD-SUFFIX.N, e.g. x2x.17: the end of the pod's name
and the agent's sequence number.`,
		Example: `  tether requests list deploy/orders --status 5xx
  tether requests show deploy/orders x2x.17
  tether requests stats deploy/orders
  tether requests export orders --since 10m -f recent.har
  tether requests save orders incident-42.json
  tether requests compare orders`,
	}
	cmd.AddCommand(NewCmdList(f, nil), NewCmdShow(f, nil), NewCmdStats(f, nil), NewCmdExport(f, nil), NewCmdSave(f, nil), NewCmdCompare(f, nil))
	return cmd
}

// read returns the exchanges the daemon reads from the agents.
func (o *WorkloadOptions) read(ctx context.Context, req daemon.RequestsRequest) ([]*recording.Exchange, []daemon.PodRecording, error) {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	return Read(ctx, client, req, o.ErrOut)
}

// Read returns the exchanges the daemon reads from a workload's agents,
// warning on errOut about pods it could not read and about agents that
// record with redaction off.
func Read(ctx context.Context, client daemon.Service, req daemon.RequestsRequest, errOut io.Writer) ([]*recording.Exchange, []daemon.PodRecording, error) {
	var got []*recording.Exchange
	pods, err := client.Requests(ctx, req, func(e *recording.Exchange) error { got = append(got, e); return nil })
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pods {
		if p.Error != "" {
			fmt.Fprintf(errOut, "warning: pod %s: %s\n", p.Pod, p.Error)
		}
		if p.Stats.RedactionOff {
			fmt.Fprintf(errOut, "warning: pod %s records with redaction OFF (--no-redact): secrets are in these records\n", p.Pod)
		}
	}
	return got, pods, nil
}

// Ref names an exchange across a workload's pods: the end of the pod's
// name and the agent's sequence number.
func Ref(e *recording.Exchange) string { return cmdutil.ExchangeRef(e) }

func podSuffix(pod string) string { return cmdutil.PodSuffix(pod) }

// ParseRef reads "x2x.17", or "17" when one pod recorded.
func ParseRef(s string) (suffix string, id uint64, err error) {
	suffix, num, ok := strings.Cut(s, ".")
	if !ok {
		suffix, num = "", s
	}
	id, err = strconv.ParseUint(num, 10, 64)
	if err != nil || id == 0 {
		return "", 0, errdefs.User("%q is not an exchange name: write it as `tether requests list` shows it, e.g. x2x.17", s)
	}
	return suffix, id, nil
}

// Find picks the exchange ref names among exchanges with that id.
func Find(ref string, candidates []*recording.Exchange) (*recording.Exchange, error) {
	suffix, id, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	var match []*recording.Exchange
	for _, e := range candidates {
		if e.ID == id && (suffix == "" || podSuffix(e.Pod) == suffix) {
			match = append(match, e)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, errdefs.User("no recorded exchange %s (it may have been evicted to stay within the budget); `tether requests list` shows what is held", ref)
	}
	var refs []string
	for _, e := range match {
		refs = append(refs, Ref(e))
	}
	return nil, errdefs.User("%s is ambiguous across pods: say which of %s", ref, strings.Join(refs, ", "))
}
