package netns

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/resolvconf"
)

// stopGrace is how long CMD has between SIGTERM and SIGKILL when ctx ends.
const stopGrace = 10 * time.Second

// Run runs Argv in its own namespaces until it exits and returns its exit
// status (128+signal when a signal killed it).
//
// SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this process reach CMD
// (a Ctrl-C on the terminal reaches CMD directly, as the terminal sends it
// to the whole foreground process group). When ctx ends, CMD gets SIGTERM,
// then SIGKILL after 10 seconds; so ctx should not be one that a SIGINT
// cancels (signal.NotifyContext), or Ctrl-C would also send SIGTERM.
func Run(ctx context.Context, cfg Config) (int, error) {
	argv0, env, err := validate(cfg)
	if err != nil {
		return 0, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	podConf, err := resolvconf.Parse(bytes.NewReader(cfg.ResolvConf))
	if err != nil {
		return 0, errdefs.User("the pod's resolv.conf: %v", err)
	}

	tmp, err := os.MkdirTemp("", "tether-run-")
	if err != nil {
		return 0, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	ic, err := writeInitFiles(tmp, cfg)
	if err != nil {
		return 0, err
	}
	ic.Path, ic.Argv, ic.Env, ic.Dir, ic.Files, ic.MTU = argv0, cfg.Argv, env, cfg.Dir, cfg.Files, tunMTU
	init, tun, err := startInit(cfg, ic)
	if err != nil {
		return 0, explain(err)
	}
	defer init.close()
	defer tun.Close()

	// The stack and the bridge serve until Run returns, whatever ctx does.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	res := newResolver(cfg.Dial, nameservers(podConf.Nameservers), podConf.Search, hostNameservers(cfg), log)
	defer res.close()
	dnsAddr := map[netip.Addr]bool{}
	for _, s := range podConf.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil {
			dnsAddr[a.Unmap()] = true
		}
	}
	ns, err := newNetstack(sctx, int(tun.Fd()), &netstack{dial: cfg.Dial, cluster: cfg.Cluster, dnsAddr: dnsAddr, res: res, log: log})
	if err != nil {
		return 0, err
	}
	defer ns.close()

	hostDiag, err := openListenDiag()
	if err != nil {
		return 0, err
	}
	defer hostDiag.close()
	nsDiagF, err := init.socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag socket in CMD's namespace: %w", err)
	}
	nsDiag := newListenDiag(nsDiagF)
	defer nsDiag.close()
	br := newBridge(log, hostDiag, nsDiag, func(family int) (*os.File, error) { return init.socket(family, unix.SOCK_STREAM, 0) })
	br.sync() // the machine's ports are there before CMD starts
	bridgeDone := make(chan struct{})
	go func() { br.run(sctx); close(bridgeDone) }()
	defer func() { stop(); <-bridgeDone }()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	if err := init.start(); err != nil {
		return 0, fmt.Errorf("start CMD: %w", err)
	}
	return wait(ctx, init, sigs, cfg.Argv[0], log)
}

// wait passes signals and the end of ctx on to CMD until it exits.
func wait(ctx context.Context, init *initConn, sigs <-chan os.Signal, name string, log *slog.Logger) (int, error) {
	var killTimer <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case m, ok := <-init.msgs:
			if !ok {
				return 0, fmt.Errorf("the namespace init ended before CMD did")
			}
			switch m.Op {
			case "started":
				log.Debug("CMD started", "pid", m.Pid)
			case "exit":
				if m.Err != "" {
					return 0, errdefs.User("start %s: %s", name, m.Err)
				}
				return m.Status, nil
			}
		case s := <-sigs:
			if fromTerminal(s) {
				continue // the terminal sent it to CMD too
			}
			init.signal(s.(syscall.Signal))
		case <-done:
			done = nil
			init.signal(unix.SIGTERM)
			killTimer = time.After(stopGrace)
		case <-killTimer:
			init.signal(unix.SIGKILL)
		}
	}
}

// validate checks cfg before anything starts and returns CMD's path and
// environment.
func validate(cfg Config) (string, []string, error) {
	if len(cfg.Argv) == 0 {
		return "", nil, errdefs.User("no command to run: give it after `--`")
	}
	if cfg.Dial == nil {
		return "", nil, fmt.Errorf("netns.Run: no Dial")
	}
	if len(cfg.ResolvConf) == 0 {
		return "", nil, fmt.Errorf("netns.Run: no ResolvConf")
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	argv0, err := lookPath(cfg.Argv[0], env, cfg.Dir)
	if err != nil {
		return "", nil, err
	}
	for dst, src := range cfg.Files {
		if !filepath.IsAbs(dst) {
			return "", nil, errdefs.User("file mount %q: the path in CMD's view must be absolute", dst)
		}
		if _, err := os.Stat(src); err != nil {
			return "", nil, errdefs.User("file mount %s: %v", dst, err)
		}
	}
	return argv0, env, nil
}

// writeInitFiles writes, in the private directory tmp, what the init
// mounts besides Files: the pod's resolv.conf and, when the machine's
// nsswitch.conf resolves hosts by other means than files and DNS (nss-resolve,
// mdns), one that resolves them as the pod does.
func writeInitFiles(tmp string, cfg Config) (*initConfig, error) {
	ic := &initConfig{ResolvConf: filepath.Join(tmp, "resolv.conf"), Staging: filepath.Join(tmp, "staging")}
	if err := os.WriteFile(ic.ResolvConf, cfg.ResolvConf, 0o644); err != nil {
		return nil, err
	}
	if err := os.Mkdir(ic.Staging, 0o700); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile("/etc/nsswitch.conf"); err == nil {
		if fixed, changed := podHosts(b); changed {
			ic.NSSwitch = filepath.Join(tmp, "nsswitch.conf")
			if err := os.WriteFile(ic.NSSwitch, fixed, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return ic, nil
}

func nameservers(ns []string) []string {
	var out []string
	for _, s := range ns {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
	}
	return out
}

// hostNameservers are the machine's nameservers, asked for the names the
// cluster does not know.
func hostNameservers(cfg Config) []string {
	if cfg.hostDNS != nil {
		return cfg.hostDNS
	}
	rc := cfg.HostResolvConf
	if rc == nil {
		rc, _ = os.ReadFile("/etc/resolv.conf")
	}
	c, _ := resolvconf.Parse(bytes.NewReader(rc))
	return nameservers(c.Nameservers)
}

// lookPath finds argv0 as CMD's PATH would.
func lookPath(argv0 string, env []string, dir string) (string, error) {
	notFound := func(why string) error {
		return errdefs.User("command %q %s: check its name, or give its path", argv0, why)
	}
	check := func(p string) bool {
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	if strings.Contains(argv0, "/") {
		if !check(argv0) {
			return "", notFound("is not an executable file")
		}
		return argv0, nil
	}
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if p := filepath.Join(d, argv0); check(p) {
			if !filepath.IsAbs(p) {
				if abs, err := filepath.Abs(filepath.Join(dir, p)); err == nil {
					p = abs
				}
			}
			return p, nil
		}
	}
	return "", notFound("is not found in PATH")
}
