// Package app assembles tether's command tree. Each verb lives in its own
// package under cli/; this package only wires them together.
package app

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/klog/v2"

	"github.com/tetherkube/tether/cli/capture"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/connect"
	"github.com/tetherkube/tether/cli/daemoncmd"
	"github.com/tetherkube/tether/cli/dns"
	"github.com/tetherkube/tether/cli/doctor"
	"github.com/tetherkube/tether/cli/env"
	"github.com/tetherkube/tether/cli/gatherlogs"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/cli/internal/netns"
	"github.com/tetherkube/tether/cli/leave"
	"github.com/tetherkube/tether/cli/logs"
	"github.com/tetherkube/tether/cli/quit"
	"github.com/tetherkube/tether/cli/record"
	replaycmd "github.com/tetherkube/tether/cli/replay"
	"github.com/tetherkube/tether/cli/reproduce"
	"github.com/tetherkube/tether/cli/requests"
	"github.com/tetherkube/tether/cli/rollback"
	"github.com/tetherkube/tether/cli/run"
	"github.com/tetherkube/tether/cli/session"
	"github.com/tetherkube/tether/cli/status"
	"github.com/tetherkube/tether/cli/trace"
	"github.com/tetherkube/tether/cli/version"
	"github.com/tetherkube/tether/internal/errdefs"
)

// NewRootCommand returns the root `tether` command. argv0 is the name the
// binary was run as: installed as kubectl-tether, help and usage read
// `kubectl tether ...`.
func NewRootCommand(streams genericiooptions.IOStreams, argv0 string) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true)
	f := &cmdutil.Factory{IOStreams: streams, KubeConfig: configFlags, Flags: configFlags}

	root := &cobra.Command{
		Use:   "tether",
		Short: "Debug services running in Kubernetes from your laptop",
		Long: `tether connects your laptop to a Kubernetes workload: send its traffic to a
process on your machine, record and replay the requests it sees, roll back
every change tether made, and see where a connection or a DNS name goes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(filepath.Base(argv0), "kubectl-") || strings.HasPrefix(filepath.Base(argv0), "kubectl_complete-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl tether"}
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	configFlags.AddFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return errdefs.User("%w\nSee '%s --help' for the flags it takes.", err, c.CommandPath())
	})

	root.AddCommand(
		connect.NewCmdConnect(f, nil),
		status.NewCmdStatus(f, nil),
		intercept.NewCmdIntercept(f, nil),
		leave.NewCmdLeave(f, nil),
		rollback.NewCmdRollback(f, nil),
		quit.NewCmdQuit(f, nil),
		capture.NewCmdCapture(f, nil),
		dns.NewCmdDNS(f, nil),
		trace.NewCmdTrace(f, nil),
		env.NewCmdEnv(f, nil),
		record.NewCmdRecord(f, nil),
		run.NewCmdRun(f, nil),
		requests.NewCmdRequests(f),
		replaycmd.NewCmdReplay(f, nil),
		reproduce.NewCmdReproduce(f, nil),
		session.NewCmdSession(f),
		logs.NewCmdLogs(f, nil),
		gatherlogs.NewCmdGatherLogs(f, nil),
		doctor.NewCmdDoctor(f, nil),
		version.NewCmdVersion(f, nil),
		daemoncmd.NewCmdDaemon(f),
	)
	addCompletions(f, root)
	return root
}

// addCompletions wires the verbs' arguments and flags to the names the
// cluster holds, for `tether completion SHELL` (cmdutil's Complete*).
func addCompletions(f *cmdutil.Factory, root *cobra.Command) {
	workload, withPods, pod := f.CompleteWorkload(false), f.CompleteWorkload(true), f.CompletePod()
	for path, fn := range map[string]cobra.CompletionFunc{
		"intercept": workload, "leave": workload, "rollback": workload, "record": workload,
		"env": withPods, "run": withPods, "trace": withPods,
		"capture": pod, "dns": pod,
		"requests list": workload, "requests stats": workload, "requests export": workload,
		"requests save": workload, "requests compare": workload,
		"requests show": f.CompleteRecorded(), "replay": f.CompleteRecorded(), "reproduce": f.CompleteRecorded(),
	} {
		if cmd, _, err := root.Find(strings.Fields(path)); err == nil && cmd.ValidArgsFunction == nil {
			cmd.ValidArgsFunction = fn
		}
	}
	for _, path := range []string{"intercept", "record"} {
		if cmd, _, err := root.Find([]string{path}); err == nil {
			_ = cmd.RegisterFlagCompletionFunc("port", f.CompleteServicePort())
		}
	}
}

// Run executes tether with args (without the program name).
func Run(ctx context.Context, streams genericiooptions.IOStreams, argv0 string, args []string) error {
	// `tether run`'s namespace init is this binary re-executed with
	// argv[1] == netns.InitArg: it runs and exits here, before any command.
	netns.MaybeInit()
	// client-go's own logging must not mix into command output; the daemon
	// routes it into its log file instead (cli/daemoncmd).
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	root := NewRootCommand(streams, argv0)
	if strings.HasPrefix(filepath.Base(argv0), "kubectl_complete-") {
		// kubectl (1.26+) completes `kubectl tether ...` by running
		// kubectl_complete-tether with the words after the plugin's name.
		args = append([]string{cobra.ShellCompRequestCmd}, args...)
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var status cmdutil.ExitStatus
	switch {
	case errors.As(err, &status):
		// A process tether ran for the user ended (Ctrl-C may have ended
		// it): its own status is the answer.
		return err
	case err != nil && ctx.Err() != nil:
		return errdefs.ErrCanceled
	case err != nil && strings.HasPrefix(err.Error(), "unknown command"):
		// cobra's own wording; it already lists close matches.
		return errdefs.Mark(errdefs.ErrUser, err)
	}
	return err
}
