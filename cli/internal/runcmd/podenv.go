package runcmd

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/daemon"
)

// PodView is what the process gets of its pod besides the network: the
// variables set on top of its own, and the files bind-mounted at their
// real paths in the namespace mode (path in CMD's view -> local path).
type PodView struct {
	Env    []string
	Mounts map[string]string
}

// NotFromPod are the variables --env leaves as they are on this machine:
// they name the image's programs, libraries, user or session, and would
// break the local process (a PATH without the machine's tools, a HOME of
// /root, a JAVA_HOME that Maven or Gradle cannot find, an LD_PRELOAD or a
// -javaagent of a file that is only in the image).
var NotFromPod = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "PWD", "OLDPWD", "SHLVL", "TMPDIR",
	"LD_LIBRARY_PATH", "LD_PRELOAD",
	"JAVA_HOME", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS",
	"GOROOT", "GOPATH", "PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "NODE_PATH",
}

// PodOptions are --env and --files of run and intercept -- CMD.
type PodOptions struct {
	// Env: the container's variables (tether env's, source auto).
	Env bool
	// FilesDir, when set, receives the container's volume files
	// (tether env --files) and is TETHER_ROOT.
	FilesDir   string
	AgentImage string
	Quiet      bool
	ErrOut     io.Writer
}

// Wanted reports whether o asks for anything of the pod.
func (o PodOptions) Wanted() bool { return o.Env || o.FilesDir != "" }

// FromPod returns the Config.PodEnv that reads the run's own pod and
// container (as the run's ready event names them) through the daemon's
// Env, as `tether env` does.
func FromPod(svc daemon.Service, o PodOptions) func(context.Context, daemon.RunInfo) (PodView, error) {
	return func(ctx context.Context, info daemon.RunInfo) (PodView, error) {
		progress := func(line string) {
			if !o.Quiet {
				fmt.Fprintln(o.ErrOut, line)
			}
		}
		res, err := svc.Env(ctx, daemon.EnvRequest{Namespace: info.Namespace, Target: "pod/" + info.Pod,
			Container: info.Container, Source: daemon.EnvAuto, Files: o.FilesDir != "", AgentImage: o.AgentImage}, progress)
		if err != nil {
			return PodView{}, fmt.Errorf("read pod %s's environment: %w", info.Pod, err)
		}
		var v PodView
		if o.Env {
			var left []string
			for _, e := range res.Vars {
				if slices.Contains(NotFromPod, e.Name) {
					left = append(left, e.Name)
					continue
				}
				v.Env = append(v.Env, e.Name+"="+e.Value)
			}
			progress(fmt.Sprintf("--env: %d variables of pod %s's container %s (from its %s)%s", len(v.Env), res.Pod, res.Container, res.Source, leftNote(left)))
		}
		for _, w := range res.Warnings {
			progress("warning: " + w)
		}
		if o.FilesDir != "" {
			root, err := podfiles.Write(o.FilesDir, res.Files)
			if err != nil {
				return PodView{}, err
			}
			v.Env = append(v.Env, "TETHER_ROOT="+root)
			v.Mounts = podfiles.Mounts(root, res.Files)
			progress(fmt.Sprintf("--files: wrote %d files of pod %s's container %s under %s", len(res.Files), res.Pod, res.Container, root))
			for _, m := range res.NotCopied {
				progress(fmt.Sprintf("not copied: %s (%s volume %s): %s", m.MountPath, m.Kind, m.Volume, m.Reason))
			}
		}
		return v, nil
	}
}

func leftNote(left []string) string {
	if len(left) == 0 {
		return ""
	}
	return "; kept this machine's " + strings.Join(left, ", ") + " (they name the image's programs, paths or user)"
}
