// Package env implements `tether env`.
package env

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// EnvOptions are the flags and dependencies of `tether env`.
type EnvOptions struct {
	genericiooptions.IOStreams

	Target, Container, Format, File, FilesDir, Source, AgentImage string
	ShowSecrets, Sources                                          bool

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Terminal reports whether Out is a terminal (secrets are hidden there).
	Terminal func() bool
}

// NewCmdEnv returns the env command; runF replaces Run in tests.
func NewCmdEnv(f *cmdutil.Factory, runF func(context.Context, *EnvOptions) error) *cobra.Command {
	o := &EnvOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
		Terminal: func() bool {
			out, ok := f.IOStreams.Out.(*os.File)
			return ok && term.IsTerminal(int(out.Fd()))
		},
	}
	cmd := &cobra.Command{
		Use:   "env WORKLOAD|pod/NAME",
		Short: "Print a container's environment as its process sees it, for a local run",
		Long: `Print the environment of a container of a running pod, as its process sees
it, to run the same program on your machine with it: the pod spec's env
and envFrom (ConfigMaps and Secrets, prefixes, optional references),
valueFrom (configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef),
$(VAR) expansion, the Service link variables, the image's ENV and what the
runtime adds (PATH, HOSTNAME).

WORKLOAD is deploy/NAME, sts/NAME or a bare NAME, as for intercept and run
(a ready pod of it is read, and named), or a pod: pod/NAME. -c names the container (default: the pod's
default-container annotation, else its first container).

--source process (the default, auto, falls back to spec when it cannot)
reads the process's /proc/PID/environ through tether's agent, added to the
pod as an ephemeral container that runs as the process's user, with no
capabilities (the pod is not restarted, the container stays listed on it).
--source spec computes the variables from the pod's spec and the objects it
names, as the kubelet does, and adds nothing to the pod; the image's ENV and
the runtime's variables are then missing. Where the process's value differs
from the spec's (a ConfigMap changed after the container started) the
process's value is printed and a warning names the variable.

Formats: dotenv (KEY=value, read by VS Code's envFile, Node's and Python's
dotenv, direnv's dotenv), shell (export KEY='value', for sh, bash and zsh:
eval "$(tether env ... --format shell)"), json (an object, as launch.json's
"env" takes it) and yaml. --sources adds each variable's source: a comment
line in dotenv and shell, a list of {name, value, source, secret} in json
and yaml.

Secret values (from Secrets) are not printed to a terminal unless
--show-secrets; written to a file (-f, mode 0600, replaced atomically) or a
pipe they are, as that is what they are for.

--files DIR writes the container's ConfigMap, Secret, projected (the
service account token included) and downwardAPI volumes under
DIR/<mountPath> (files 0600, folders 0700), as the process reads them, and
adds TETHER_ROOT=DIR to the variables; the container's other volumes are
listed as not copied, with the reason.

Exit status: 0 done, 2 bad input (nothing is changed), 1 otherwise.`,
		Example: `  # A .env file for VS Code ("envFile": "${workspaceFolder}/.env") or direnv
  tether env deploy/orders -f .env

  # Run the service locally with the pod's environment
  eval "$(tether env deploy/orders --format shell)" && go run ./cmd/orders

  # Where each variable comes from, secrets hidden on the terminal
  tether env pod/orders-7d9c-x2x -c app --sources

  # The config files too: the app reads $TETHER_ROOT/etc/orders/config.yaml
  tether env deploy/orders -f .env --files ./pod-files

  # Without adding anything to the pod (no image ENV then)
  tether env deploy/orders --source spec --format json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVarP(&o.Container, "container", "c", "", "the container (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Format, "format", FormatDotenv, "dotenv, shell, json or yaml")
	cmd.Flags().StringVarP(&o.Format, "output", "o", FormatDotenv, "the same as --format (-o json, -o yaml as other commands take it)")
	cmd.Flags().StringVarP(&o.File, "file", "f", "", "write to FILE (mode 0600, replaced atomically) instead of stdout")
	cmd.Flags().StringVar(&o.FilesDir, "files", "", "also write the container's ConfigMap, Secret, projected and downwardAPI volumes under DIR")
	cmd.Flags().StringVar(&o.Source, "source", string(daemon.EnvAuto), "auto, process or spec: where to read the variables")
	cmd.Flags().BoolVar(&o.ShowSecrets, "show-secrets", false, "print secret values to a terminal too")
	cmd.Flags().BoolVar(&o.Sources, "sources", false, "say where each variable comes from")
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image")
	return cmd
}

// Complete takes the target and resolves the namespace.
func (o *EnvOptions) Complete(args []string) error {
	o.Target = args[0]
	if o.FilesDir != "" {
		if err := podfiles.CheckDir(o.FilesDir); err != nil {
			return err
		}
	}
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *EnvOptions) Validate() error {
	if strings.TrimSpace(o.Target) == "" {
		return errdefs.User("name a workload or pod: tether env deploy/NAME, sts/NAME or pod/NAME (see --help)")
	}
	if !slices.Contains(Formats, o.Format) {
		return errdefs.User("unknown format %q: use %s", o.Format, strings.Join(Formats, ", "))
	}
	if !slices.Contains(daemon.EnvSources, daemon.EnvSource(o.Source)) {
		return errdefs.User("unknown source %q: use auto, process or spec", o.Source)
	}
	if o.FilesDir != "" && daemon.EnvSource(o.Source) == daemon.EnvSpec {
		return errdefs.User("--files reads the volumes as the container sees them, through the agent: use it without --source spec")
	}
	return nil
}

// Run reads the environment and writes it.
func (o *EnvOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := client.Env(ctx, daemon.EnvRequest{Namespace: o.Ns, Target: o.Target, Container: o.Container,
		Source: daemon.EnvSource(o.Source), Files: o.FilesDir != "", AgentImage: o.AgentImage},
		func(line string) { fmt.Fprintln(o.ErrOut, line) })
	if err != nil {
		return err
	}
	vars := res.Vars
	if o.FilesDir != "" {
		root, err := podfiles.Write(o.FilesDir, res.Files)
		if err != nil {
			return err
		}
		vars = append(vars, daemon.EnvVar{Name: "TETHER_ROOT", Value: root, Source: "tether env --files"})
		fmt.Fprintf(o.ErrOut, "wrote %d files of pod %s's container %s under %s\n", len(res.Files), res.Pod, res.Container, root)
		for _, m := range res.NotCopied {
			fmt.Fprintf(o.ErrOut, "not copied: %s (%s volume %s): %s\n", m.MountPath, m.Kind, m.Volume, m.Reason)
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(o.ErrOut, "warning: %s\n", w)
	}
	if o.Format == FormatDotenv {
		for _, v := range vars {
			if strings.ContainsAny(v.Value, "\n\r") && strings.ContainsAny(v.Value, `"\`) {
				fmt.Fprintf(o.ErrOut, "warning: %s has a newline and a quote or backslash: dotenv readers differ on such a value (VS Code and Node's dotenv read no escape but \\n); --format json or shell keeps it exact\n", v.Name)
			}
		}
	}
	if o.File != "" {
		var b bytes.Buffer
		if err := writeEnv(&b, o.Format, vars, false, o.Sources); err != nil {
			return err
		}
		if err := podfiles.WriteFileAtomic(o.File, b.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(o.ErrOut, "wrote %d variables of pod %s's container %s (from its %s) to %s\n", len(vars), res.Pod, res.Container, res.Source, o.File)
		return nil
	}
	hide := !o.ShowSecrets && o.Terminal()
	if err := writeEnv(o.Out, o.Format, vars, hide, o.Sources); err != nil {
		return err
	}
	if hide {
		if n := countSecret(vars); n > 0 {
			fmt.Fprintf(o.ErrOut, "%d secret %s hidden on the terminal: --show-secrets shows them, -f FILE or a pipe writes them\n", n, plural(n, "value", "values"))
		}
	}
	return nil
}

func countSecret(vars []daemon.EnvVar) int {
	n := 0
	for _, v := range vars {
		if v.Secret {
			n++
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
