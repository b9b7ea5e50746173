// Package status implements `tether status`.
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/httpfilter"
)

// Report is what status prints; -o json|yaml prints it as is.
type Report struct {
	Connected bool           `json:"connected"`
	Daemon    *daemon.Status `json:"daemon,omitempty"`
}

// StatusOptions are the flags and dependencies of `tether status`.
type StatusOptions struct {
	genericiooptions.IOStreams

	Output string

	// DaemonService reaches the running daemon; it does not start one.
	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	// Now is the clock idle times are counted by (nil: time.Now).
	Now func() time.Time
}

// NewCmdStatus returns the status command; runF replaces Run in tests.
func NewCmdStatus(f *cmdutil.Factory, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	o := &StatusOptions{IOStreams: f.IOStreams, DaemonService: f.RunningDaemon()}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's connection and the running intercepts",
		Long: `Show whether a daemon runs for the current kube context, the cluster it is
connected to, the running intercepts (Service port -> local port, pods and
the path each one's tunnel takes: direct or port-forward), and the workloads tether's agent sits in, with how each records. It starts no
daemon: with none running it says so and succeeds.`,
		Example: `  tether status
  tether status --context staging
  tether status -o json`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete has nothing to resolve.
func (o *StatusOptions) Complete([]string) error { return nil }

// Validate checks the options without I/O.
func (o *StatusOptions) Validate() error { return cmdutil.ValidateOutput(o.Output) }

// Run asks the daemon, if one runs, and prints its state.
func (o *StatusOptions) Run(ctx context.Context) error {
	var rep Report
	client, done, err := o.DaemonService(ctx)
	switch {
	case errors.Is(err, cmdutil.ErrNoDaemon):
	case err != nil:
		return err
	default:
		defer done()
		st, err := client.Status(ctx)
		if err != nil {
			return err
		}
		rep = Report{Connected: true, Daemon: &st}
	}
	return o.print(rep)
}

func (o *StatusOptions) print(rep Report) error {
	output := o.Output
	if output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, output, rep)
	}
	out := o.Out
	if !rep.Connected {
		fmt.Fprintln(out, "Not connected: no daemon runs for this context. `tether connect` or `tether intercept` starts one.")
		return nil
	}
	st := rep.Daemon
	fmt.Fprintf(out, "Connected to context %s (%s, Kubernetes %s); daemon %s, pid %d\n", st.Context, st.Server, st.ServerVersion, st.DaemonVersion, st.PID)
	if len(st.Intercepts) == 0 {
		fmt.Fprintln(out, "No intercepts.")
	} else {
		fmt.Fprintln(out, "Intercepts:")
		for _, i := range st.Intercepts {
			dest := fmt.Sprintf("localhost:%d", i.LocalPort)
			if i.LocalPort == 0 {
				dest = "recorded, not intercepted" // record --no-restart
			}
			fmt.Fprintf(out, "  %s in %s: service %s port %d%s -> %s (agent port %d%s; pods: %s)\n",
				i.Name, i.Namespace, i.Service, i.ServicePort, takes(i.Filter, i.Mirror), dest, i.AgentPort, modeNote(i.Mode), i.PodsAndPaths())
			printPort(out, i)
		}
	}
	if len(st.Agents) > 0 {
		fmt.Fprintln(out, "Agents (`tether rollback WORKLOAD` removes one):")
		for _, a := range st.Agents {
			rec := "recording, redacting " + strings.Join(a.Redacted, ", ") + " and names that look secret (docs/replay.md)"
			switch {
			case !a.Recording:
				rec = "not recording"
			case a.RedactionOff:
				rec = "recording with redaction OFF (--no-redact): secrets are kept as seen"
			}
			if a.NoRestartUnheld {
				rec = fmt.Sprintf("an intercept or recording --no-restart this daemon does not hold (another tether's, or one whose daemon "+
					"stopped): its Service sends traffic only to the pods marked then; if nobody uses it, `tether rollback %s -n %s`", a.Workload, a.Namespace)
			}
			fmt.Fprintf(out, "  %s in %s: %s\n", a.Workload, a.Namespace, rec)
			now := time.Now
			if o.Now != nil {
				now = o.Now
			}
			for _, p := range a.Pods {
				fmt.Fprintf(out, "    pod %s: %s\n", p.Pod, podState(p, a.Recording, now()))
			}
		}
	}
	if len(st.Sessions) > 0 {
		fmt.Fprintln(out, "Sessions (`tether session diff -n NAMESPACE` shows what changed):")
		for _, se := range st.Sessions {
			fmt.Fprintf(out, "  %s in %s: since %s by %s, %d objects\n", se.Name, se.Namespace, se.Since.Format(time.RFC3339), se.By, se.Objects)
		}
	}
	return nil
}

// takes says which requests an intercept takes: "" for all traffic.
func takes(spec httpfilter.Spec, mirror bool) string {
	f, _ := httpfilter.Parse(spec)
	switch {
	case mirror && spec.IsZero():
		return ", a copy of every request"
	case mirror:
		return ", a copy of the requests with " + f.String()
	case !spec.IsZero():
		return ", requests with " + f.String()
	}
	return ""
}

// printPort lists everyone's intercepts of i's port, and what the agent
// sent to the app unfiltered, when the port is shared or filtered.
func printPort(out io.Writer, i daemon.InterceptInfo) {
	if len(i.PortIntercepts) == 0 || len(i.PortIntercepts) == 1 && i.Filter.IsZero() && !i.Mirror {
		return
	}
	fmt.Fprintf(out, "    the port's intercepts (agent of pod %s):\n", i.PortIntercepts[0].Pod)
	for _, p := range i.PortIntercepts {
		what := strings.TrimPrefix(takes(p.Filter, p.Mirror), ", ")
		if what == "" {
			what = "all traffic"
		}
		counts := fmt.Sprintf("%d requests", p.Requests)
		if p.Mirror {
			counts = fmt.Sprintf("%d copies, %d dropped", p.Requests, p.Dropped)
			if p.Shed > 0 {
				counts += fmt.Sprintf(", %d of them while the agent ran near its CPU limit", p.Shed)
			}
		}
		fmt.Fprintf(out, "      %s: %s, since %s (%s)\n", p.Owner, what, p.Since.Local().Format("15:04:05"), counts)
	}
	fmt.Fprintf(out, "    to the app: %d requests no filter selected; %d connections not cleartext HTTP (%d TLS), unfiltered\n",
		i.ToApp, i.NotHTTP, i.TLS)
}

// modeNote names the mode of an intercept that restarted no pod.
func modeNote(mode string) string {
	if mode == "no-restart" {
		return "; mode: no-restart"
	}
	return ""
}

// podState says whether a pod's agent is in use, idle (for how long) and
// recording, and whether this daemon keeps a tunnel to it.
func podState(p daemon.AgentPod, recording bool, now time.Time) string {
	if p.Error != "" {
		return "not reachable: " + p.Error
	}
	intercepted := p.IdleSince.IsZero()
	s := "intercepted"
	if !intercepted {
		s = idleState(p, recording, now)
	}
	switch {
	case p.Aside && p.Passive != nil:
		// A mirror copies from the packets and leaves it aside.
		s += "; stepped aside: the Service sends its callers to the app (mirrors copy from the packets) until an intercept that is not a mirror"
	case p.Aside:
		s += "; stepped aside: the Service sends its callers to the app until the next intercept"
	case intercepted:
		return s
	}
	if ps := p.Passive; ps != nil {
		s += fmt.Sprintf("; %d connections recorded from packets (not recorded: %d open before the agent started, %d with packets lost",
			ps.Conns, ps.MidStream, ps.Gaps)
		if ps.DroppedPackets > 0 {
			s += fmt.Sprintf(", %d packets the kernel dropped", ps.DroppedPackets)
		}
		s += ")"
	}
	if p.TunnelKept {
		s += "; tunnel kept for the next intercept"
	}
	return s
}

func idleState(p daemon.AgentPod, recording bool, now time.Time) string {
	idle := "idle " + roughly(now.Sub(p.IdleSince))
	switch {
	case !recording:
		return idle
	case p.RecordingPaused:
		return idle + ", recording paused (the next intercept resumes it)"
	case p.RecordIdle > 0:
		return idle + ", recording until idle " + roughly(p.RecordIdle) + " (--record-idle)"
	}
	return idle + ", recording (never pauses)"
}

// roughly writes d as people say it: 45s, 12m, 3h5m.
func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	h := int(d.Hours())
	if m := int(d.Minutes()) - 60*h; m > 0 {
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dh", h)
}
