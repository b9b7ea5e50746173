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

// Options are what every requests subcommand shares.
type Options struct {
	genericiooptions.IOStreams

	Workload, Output string
	Status, Method   string
	Path             string
	Since            time.Duration
	Limit            int

	Namespace string
	Daemon    func(ctx context.Context) (daemon.Service, func(), error)
	NS        func() (string, error)
	Now       func() time.Time
}

// NewCmdRequests returns the requests command and its subcommands.
func NewCmdRequests(f *cmdutil.Factory) *cobra.Command {
	newOpts := func() *Options {
		return &Options{
			IOStreams: f.IOStreams,
			Daemon:    f.DaemonService(),
			NS:        f.Namespace(),
			Now:       time.Now,
		}
	}
	cmd := &cobra.Command{
		Use:   "requests",
		Short: "List and show the HTTP requests tether's agents recorded",
		Long: `The agent in front of a workload (put there by ` + "`tether record`" + ` or an intercept)
keeps the recent HTTP exchanges it forwarded. These commands read them from
every pod of the workload, oldest first.

An exchange is named POD-SUFFIX.N, e.g. x2x.17: the end of the pod's name
and the agent's sequence number.`,
	}
	cmd.AddCommand(newCmdList(newOpts()), newCmdShow(newOpts()), newCmdStats(newOpts()), newCmdExport(newOpts()), newCmdSave(newOpts()))
	return cmd
}

func (o *Options) complete(args []string) error {
	o.Workload = args[0]
	ns, err := o.NS()
	if err != nil {
		return err
	}
	o.Namespace = ns
	return cmdutil.ValidateOutput(o.Output)
}

// FilterFromFlags builds the recording filter from the flags.
func (o *Options) FilterFromFlags() (recording.Filter, error) {
	f := recording.Filter{Status: o.Status, Method: o.Method, PathPrefix: o.Path}
	if err := f.Validate(); err != nil {
		return f, errdefs.User("--%v", err)
	}
	if o.Since < 0 {
		return f, errdefs.User("--since must be a positive duration such as 10m")
	}
	if o.Since > 0 {
		f.Since = o.Now().Add(-o.Since)
	}
	if o.Limit < 0 {
		return f, errdefs.User("--limit must not be negative")
	}
	return f, nil
}

// read returns the exchanges the daemon reads from the agents.
func (o *Options) read(ctx context.Context, req daemon.RequestsRequest) ([]*recording.Exchange, []daemon.PodRecording, error) {
	client, done, err := o.Daemon(ctx)
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
func Ref(e *recording.Exchange) string {
	return podSuffix(e.Pod) + "." + strconv.FormatUint(e.ID, 10)
}

func podSuffix(pod string) string {
	if i := strings.LastIndexByte(pod, '-'); i >= 0 {
		return pod[i+1:]
	}
	return pod
}

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
