package session

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
)

// DiffOptions are the flags and dependencies of `tether session diff`.
type DiffOptions struct {
	Options
}

// NewCmdDiff returns `session diff`; runF replaces Run in tests.
func NewCmdDiff(f *cmdutil.Factory, runF func(context.Context, *DiffOptions) error) *cobra.Command {
	o := &DiffOptions{Options: newOptions(f)}
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what changed in the namespace since the session started",
		Long: `Compare the namespace's objects with the session's snapshot, object by object
and field by field: what was modified (a unified diff of the YAML), created
and deleted. Fields the API server or a controller sets are left out
(docs/session.md, "What a diff ignores"); Secrets' values show as their
length and hash. -o json lists each object's change and field paths.`,
		Example: `  tether session diff -n shop
  tether session diff -n shop -o json | jq '.changes[] | [.object, .change]'`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete resolves the namespace.
func (o *DiffOptions) Complete([]string) error { return o.complete() }

// Validate checks the options without I/O.
func (o *DiffOptions) Validate() error { return cmdutil.ValidateOutput(o.Output) }

// Run asks the daemon for the diff and prints it.
func (o *DiffOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	d, err := client.SessionDiff(ctx, o.Ns)
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, d)
	}
	since := d.Session.Since.Local().Format(time.RFC3339)
	if len(d.Changes) == 0 {
		fmt.Fprintf(o.Out, "Nothing changed in %s since session %s started (%s).\n", d.Session.Namespace, d.Session.Name, since)
		return nil
	}
	fmt.Fprintf(o.Out, "%d objects changed in %s since session %s started (%s):\n", len(d.Changes), d.Session.Namespace, d.Session.Name, since)
	for _, c := range d.Changes {
		line := fmt.Sprintf("  %-8s %s", c.Change, c.Object)
		if len(c.Paths) > 0 {
			line += ": " + strings.Join(c.Paths, ", ")
		}
		fmt.Fprintln(o.Out, line)
	}
	for _, c := range d.Changes {
		fmt.Fprintln(o.Out)
		fmt.Fprint(o.Out, c.Diff)
	}
	return nil
}
