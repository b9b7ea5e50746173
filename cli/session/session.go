// Package session implements `tether session start|diff|rollback|end`:
// snapshot a namespace's objects in the cluster before debugging, see
// what changed since, and put it back (docs/session.md).
package session

import (
	"context"
	"regexp"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// NewCmdSession returns the session command and its subcommands.
func NewCmdSession(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Snapshot a namespace before debugging, see what changed, put it back",
		Long: `A session snapshots, in the cluster, every object of a namespace you may change
while debugging: Deployments, StatefulSets, DaemonSets, Services, ConfigMaps,
Secrets, HPAs, PodDisruptionBudgets, NetworkPolicies and Ingresses. Change
them with any tool; 'session diff' says what changed, 'session rollback'
puts everything back exactly, 'session end' keeps the changes.

The snapshot lives in Secrets of the namespace, so a lost laptop loses
nothing and any machine with the same rights can roll back. docs/session.md
has the details and the Role each subcommand needs.`,
		Example: `  tether session start incident-42 -n shop
  kubectl -n shop set image deploy/orders app=orders:debug
  tether session diff -n shop
  tether session rollback -n shop`,
	}
	cmd.AddCommand(NewCmdStart(f, nil), NewCmdDiff(f, nil), NewCmdRollback(f, nil), NewCmdEnd(f, nil), NewCmdReport(f, nil))
	return cmd
}

// Options are what every session subcommand shares.
type Options struct {
	genericiooptions.IOStreams

	Output string
	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
}

func newOptions(f *cmdutil.Factory) Options {
	return Options{IOStreams: f.IOStreams, DaemonService: f.DaemonService(), Namespace: f.Namespace()}
}

func (o *Options) complete() error {
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Compiled when first used, not at every start of the CLI.
var nameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$`)
})

// validateName checks a session's name.
func validateName(name string) error {
	if name != "" && !nameRE().MatchString(name) {
		return errdefs.User("session name %q: use up to 63 lower-case letters, digits, '-', '_' or '.', starting and ending with a letter or digit", name)
	}
	return nil
}

// validateInclude checks the form of --include's KIND/NAME entries; the
// daemon knows the kinds.
func validateInclude(refs []string) error {
	for _, r := range refs {
		kind, name, ok := strings.Cut(r, "/")
		if !ok || kind == "" || name == "" || strings.Contains(name, "/") {
			return errdefs.User("--include %q: want KIND/NAME, e.g. deployment/orders or cm/orders-config", r)
		}
	}
	return nil
}
