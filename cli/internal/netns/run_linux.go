package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
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
	if len(cfg.Argv) == 0 {
		return 0, errdefs.User("no command to run: give it after `--`")
	}
	if cfg.Dial == nil {
		return 0, fmt.Errorf("netns.Run: no Dial")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	argv0, err := lookPath(cfg.Argv[0], env, cfg.Dir)
	if err != nil {
		return 0, err
	}
	for dst, src := range cfg.Files {
		if !filepath.IsAbs(dst) {
			return 0, errdefs.User("file mount %q: the path in CMD's view must be absolute", dst)
		}
		if _, err := os.Stat(src); err != nil {
			return 0, errdefs.User("file mount %s: %v", dst, err)
		}
	}
	podConf, err := resolvconf.Parse(bytes.NewReader(cfg.ResolvConf))
	if err != nil {
		return 0, errdefs.User("the pod's resolv.conf: %v", err)
	}
	hostRC := cfg.HostResolvConf
	if hostRC == nil {
		hostRC, _ = os.ReadFile("/etc/resolv.conf")
	}
	hostConf, _ := resolvconf.Parse(bytes.NewReader(hostRC))

	tmp, err := os.MkdirTemp("", "tether-run-")
	if err != nil {
		return 0, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	rcPath := ""
	if len(cfg.ResolvConf) > 0 {
		rcPath = filepath.Join(tmp, "resolv.conf")
		if err := os.WriteFile(rcPath, cfg.ResolvConf, 0o644); err != nil {
			return 0, err
		}
	}
	staging := filepath.Join(tmp, "staging")
	if err := os.Mkdir(staging, 0o700); err != nil {
		return 0, err
	}

	init, c, err := startInit(cfg)
	if err != nil {
		return 0, explain(err)
	}
	defer func() {
		c.c.Close()
		_ = init.Wait()
	}()
	buf := make([]byte, 64<<10)
	if err := c.send(ctlMsg{Op: "config", Config: &initConfig{Path: argv0, Argv: cfg.Argv, Env: env, Dir: cfg.Dir, ResolvConf: rcPath, Files: cfg.Files, Staging: staging, MTU: tunMTU}}, nil); err != nil {
		return 0, explain(fmt.Errorf("configure the namespace init: %w", err))
	}
	m, tun, err := c.recv(buf)
	if err != nil {
		return 0, explain(fmt.Errorf("the namespace init: %w", err))
	}
	if m.Op != "ready" || tun == nil {
		return 0, explain(fmt.Errorf("set up CMD's namespaces: %s", m.Err))
	}
	defer tun.Close()

	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	dnsAddr := map[netip.Addr]bool{}
	var servers, hostServers []string
	for _, s := range podConf.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil {
			dnsAddr[a.Unmap()] = true
			servers = append(servers, netip.AddrPortFrom(a, 53).String())
		}
	}
	for _, s := range hostConf.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil {
			hostServers = append(hostServers, netip.AddrPortFrom(a, 53).String())
		}
	}
	if cfg.hostDNS != nil {
		hostServers = cfg.hostDNS
	}
	res := newResolver(cfg.Dial, servers, podConf.Search, hostServers, log)
	defer res.close()
	ns, err := newNetstack(sctx, int(tun.Fd()), &netstack{dial: cfg.Dial, cluster: cfg.Cluster, dnsAddr: dnsAddr, res: res, log: log})
	if err != nil {
		return 0, err
	}
	defer ns.close()

	// After "ready", the init's messages are read by one goroutine.
	var (
		sockMu sync.Mutex
		sockCh = make(chan sockReply, 1)
		msgCh  = make(chan ctlMsg, 4)
	)
	go func() {
		rbuf := make([]byte, 64<<10)
		for {
			m, f, err := c.recv(rbuf)
			if err != nil {
				close(msgCh)
				return
			}
			if m.Op == "socket" {
				sockCh <- sockReply{f, m.Err}
				continue
			}
			msgCh <- m
		}
	}()
	socketOf := func(family, typ, proto int) (*os.File, error) {
		sockMu.Lock()
		defer sockMu.Unlock()
		if err := c.send(ctlMsg{Op: "socket", Family: family, Type: typ, Proto: proto}, nil); err != nil {
			return nil, err
		}
		select {
		case r := <-sockCh:
			if r.err != "" {
				return nil, errors.New(r.err)
			}
			return r.f, nil
		case <-time.After(5 * time.Second):
			return nil, errors.New("the namespace init does not answer")
		}
	}
	socket := func(family int) (*os.File, error) { return socketOf(family, unix.SOCK_STREAM, 0) }
	hostDiag, err := openListenDiag()
	if err != nil {
		return 0, err
	}
	defer hostDiag.close()
	nsDiagF, err := socketOf(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag socket in CMD's namespace: %w", err)
	}
	nsDiag := newListenDiag(nsDiagF)
	defer nsDiag.close()
	br := newBridge(log, hostDiag, nsDiag, socket)
	br.sync() // the machine's ports are there before CMD starts
	bridgeDone := make(chan struct{})
	go func() { br.run(sctx); close(bridgeDone) }()
	defer func() { stop(); <-bridgeDone }()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)

	if err := c.send(ctlMsg{Op: "start"}, nil); err != nil {
		return 0, fmt.Errorf("start CMD: %w", err)
	}
	var killTimer <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case m, ok := <-msgCh:
			if !ok {
				return 0, fmt.Errorf("the namespace init ended before CMD did")
			}
			switch m.Op {
			case "started":
				log.Debug("CMD started", "pid", m.Pid)
			case "exit":
				if m.Err != "" {
					return 0, errdefs.User("start %s: %s", cfg.Argv[0], m.Err)
				}
				return m.Status, nil
			}
		case s := <-sigs:
			if fromTerminal(s) {
				continue // the terminal sent it to CMD too
			}
			_ = c.send(ctlMsg{Op: "signal", Signal: int(s.(syscall.Signal))}, nil)
		case <-done:
			done = nil
			_ = c.send(ctlMsg{Op: "signal", Signal: int(unix.SIGTERM)}, nil)
			killTimer = time.After(stopGrace)
		case <-killTimer:
			_ = c.send(ctlMsg{Op: "signal", Signal: int(unix.SIGKILL)}, nil)
		}
	}
}

type sockReply struct {
	f   *os.File
	err string
}

// startInit starts the init in new user, network and mount namespaces.
func startInit(cfg Config) (*exec.Cmd, ctl, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, ctl{}, err
	}
	mine, theirs, err := socketpair()
	if err != nil {
		return nil, ctl{}, err
	}
	defer theirs.Close()
	cmd := exec.Command(self, InitArg)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{theirs}
	// A background child of CMD may keep a copied stdout open: do not
	// wait for it longer than this once CMD's init has exited.
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = []string{} // CMD's environment travels in the config
	uid, gid := os.Getuid(), os.Getgid()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		AmbientCaps:                []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN},
		Pdeathsig:                  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		mine.Close()
		return nil, ctl{}, fmt.Errorf("create the namespaces: %w", err)
	}
	c, err := fileCtl(mine)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, ctl{}, err
	}
	return cmd, c, nil
}

// explain turns a failure to set the namespaces up into the reason the
// machine gives, with its fix, when Check finds one.
func explain(err error) error {
	if d := Check(); d != nil {
		return fmt.Errorf("%w (%v)", d, err)
	}
	return fmt.Errorf("the namespace network mode failed: %v; `--network proxy` works without namespaces", err)
}

// fromTerminal says whether s is a signal the terminal sent to the whole
// foreground process group, CMD included.
func fromTerminal(s os.Signal) bool {
	if s != unix.SIGINT && s != unix.SIGQUIT {
		return false
	}
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
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
