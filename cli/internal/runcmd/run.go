package runcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"

	"github.com/tetherkube/tether/cli/internal/podfiles"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Network modes. NetworkAuto (the default) is namespace where it can run,
// else proxy.
const (
	NetworkAuto      = ""
	NetworkProxy     = "proxy"
	NetworkNamespace = "namespace"
)

// NamespaceRunner runs p in network, user and mount namespaces of its own
// whose TCP and DNS to the cluster go through sess (sess.Dial, and
// sess.Info's resolv.conf and ranges), and returns p's exit status. The
// namespace mode plugs in here.
type NamespaceRunner func(ctx context.Context, sess *Session, p Process) (int, error)

// ValidNetwork checks a --network value without I/O.
func ValidNetwork(mode string) error {
	if mode != NetworkAuto && mode != NetworkProxy && mode != NetworkNamespace {
		return errdefs.User("--network %q: want proxy or namespace", mode)
	}
	return nil
}

// CheckNetwork refuses a mode this build cannot run: namespace needs a
// NamespaceRunner.
func CheckNetwork(mode string, inNamespace NamespaceRunner) error {
	if err := ValidNetwork(mode); err != nil {
		return err
	}
	if mode == NetworkNamespace && inNamespace == nil {
		return errdefs.User("--network namespace is not built yet: use --network proxy, which works on every OS now")
	}
	return nil
}

// Config is one run of a local process as if in a pod.
type Config struct {
	Service daemon.Service
	Request daemon.RunRequest
	// Network is NetworkAuto, NetworkProxy or NetworkNamespace, which
	// InNamespace runs.
	Network     string
	InNamespace NamespaceRunner
	// CheckNamespace, when set, says before anything else why the
	// namespace mode cannot run here (netns.Check).
	CheckNamespace func() error
	// Forwards are opened on 127.0.0.1 before anything else.
	Forwards []Forward
	// Process is the command; its Env is the base environment the run's
	// variables are added to.
	Process Process
	// PodEnv, when set, returns what the process gets of the run's pod:
	// variables on top of its own and, in the namespace mode, files at
	// their real paths (FromPod: --env and --files).
	PodEnv func(ctx context.Context, info daemon.RunInfo) (PodView, error)
	// Quiet drops the progress and the line saying where CMD runs.
	Quiet  bool
	ErrOut io.Writer
	Log    *slog.Logger
}

// Run starts the run, runs the process in it and tears the run down once
// the process ended. It returns the process's exit status.
func Run(ctx context.Context, cfg Config) (int, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ls, err := Listen(cfg.Forwards)
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	progress := func(line string) {
		if !cfg.Quiet {
			fmt.Fprintln(cfg.ErrOut, line)
		}
	}
	mode := cfg.Network
	if mode == NetworkAuto {
		mode = autoNetwork(cfg)
	}
	if err := CheckNetwork(mode, cfg.InNamespace); err != nil {
		return 0, err
	}
	namespace := mode == NetworkNamespace
	if namespace && cfg.CheckNamespace != nil && cfg.Network == NetworkNamespace {
		if err := cfg.CheckNamespace(); err != nil {
			return 0, err
		}
	}
	req := cfg.Request
	req.Proxy = !namespace
	for _, f := range cfg.Forwards {
		req.Services = append(req.Services, f.Service+":"+f.Port)
	}
	sess, err := Start(ctx, cfg.Service, req, progress)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	for i, f := range cfg.Forwards {
		addr := f.Service + ":" + f.Port
		if i < len(sess.Info.Services) {
			addr = sess.Info.Services[i] // the port as a number: a name means nothing to the pod's dialer
		}
		go Serve(ctx, ls[i], addr, sess.Dial, log)
	}
	p := cfg.Process
	var pod PodView
	if cfg.PodEnv != nil {
		if pod, err = cfg.PodEnv(ctx, sess.Info); err != nil {
			return 0, err
		}
	}
	podEnv := pod.Env
	how := "via proxy " + sess.Info.HTTPAddr
	if namespace {
		p.Env = Merge(p.Env, podEnv, TetherEnv(sess.Info), []string{"TETHER_NETWORK=namespace"})
		p.Mounts = pod.Mounts
		how = "in a network namespace of its own"
	} else {
		p.Env = Merge(p.Env, podEnv, ProxyEnv(sess.Info))
		if len(pod.Mounts) > 0 {
			progress("--files: the proxy mode cannot show the files at their real paths (" + strings.Join(podfiles.MountPaths(pod.Mounts), ", ") + "): CMD finds them under $TETHER_ROOT")
		}
	}
	if !cfg.Quiet {
		path := ""
		if sess.Info.Path != "" {
			path = ", " + sess.Info.Path
		}
		fmt.Fprintf(cfg.ErrOut, "running %s as if in pod %s (namespace %s%s) %s%s\n",
			strings.Join(p.Args, " "), sess.Info.Pod, sess.Info.Namespace, path, how, forwardsNote(cfg.Forwards))
	}
	// The watch says so when the run ends under CMD, and is over before
	// this returns (nothing writes to ErrOut after).
	stopWatch, watched := make(chan struct{}), make(chan struct{})
	defer func() { close(stopWatch); <-watched }()
	go func() {
		defer close(watched)
		select {
		case <-sess.Ended():
			select {
			case <-stopWatch: // CMD had ended: the run ends with it
				return
			default:
			}
			why := "the daemon ended it"
			if err := sess.Err(); err != nil {
				why = err.Error()
			}
			fmt.Fprintf(cfg.ErrOut, "tether: the run ended while %s runs: %s; its connections to the cluster fail from now on\n",
				p.Args[0], why)
		case <-stopWatch:
		}
	}()
	if namespace {
		// CMD ends on its own: a Ctrl-C that cancels ctx must not also
		// make the runner send it SIGTERM.
		return cfg.InNamespace(context.WithoutCancel(ctx), sess, p)
	}
	return Exec(p)
}

func forwardsNote(fs []Forward) string {
	if len(fs) == 0 {
		return ""
	}
	var s []string
	for _, f := range fs {
		s = append(s, fmt.Sprintf("127.0.0.1:%d -> svc/%s:%s", f.LocalPort, f.Service, f.Port))
	}
	return "; forwarding " + strings.Join(s, ", ")
}

// autoNetwork picks the namespace mode where it can run, else the proxy
// mode, saying why on Linux (elsewhere the proxy mode is the only one).
func autoNetwork(cfg Config) string {
	if cfg.InNamespace == nil {
		return NetworkProxy
	}
	if cfg.CheckNamespace != nil {
		if err := cfg.CheckNamespace(); err != nil {
			if runtime.GOOS == "linux" && !cfg.Quiet {
				fmt.Fprintf(cfg.ErrOut, "tether: the namespace network mode cannot run here, using the proxy mode: %v\n", err)
			}
			return NetworkProxy
		}
	}
	return NetworkNamespace
}
