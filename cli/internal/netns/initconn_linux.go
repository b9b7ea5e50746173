package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
	"golang.org/x/sys/unix"
)

// initConn is Run's side of the namespace init: the process and its
// control channel.
type initConn struct {
	cmd *exec.Cmd
	c   ctl

	sockMu sync.Mutex // one socket request at a time
	sockCh chan sockReply
	msgs   chan ctlMsg // started, exit; closed when the init is gone
}

// readyTimeout bounds the init's setup (it takes milliseconds).
const readyTimeout = 30 * time.Second

type sockReply struct {
	f   *os.File
	err string
}

// startInit starts the init in new user, network and mount namespaces,
// sends it ic and returns once the namespaces are set up, with the TUN's
// fd.
func startInit(cfg Config, ic *initConfig) (*initConn, *os.File, error) {
	self := cfg.initPath
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, nil, err
		}
	}
	mine, theirs, err := socketpair()
	if err != nil {
		return nil, nil, err
	}
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
	err = cmd.Start()
	// The init has its end now: keeping ours open would hide its exit.
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, nil, fmt.Errorf("create the namespaces: %w", err)
	}
	c, err := fileCtl(mine)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, err
	}
	i := &initConn{cmd: cmd, c: c, sockCh: make(chan sockReply, 1), msgs: make(chan ctlMsg, 4)}
	fail := func(err error) (*initConn, *os.File, error) {
		i.close()
		return nil, nil, err
	}
	if err := c.send(ctlMsg{Op: "config", Config: ic}, nil); err != nil {
		return fail(fmt.Errorf("configure the namespace init: %w", err))
	}
	_ = c.c.SetReadDeadline(time.Now().Add(readyTimeout))
	m, tun, err := c.recv(make([]byte, 64<<10))
	_ = c.c.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(fmt.Errorf("the namespace init: %w", err))
	}
	if m.Op != "ready" || (tun == nil && !ic.Probe) {
		return fail(fmt.Errorf("set up CMD's namespaces: %s", m.Err))
	}
	go i.read()
	return i, tun, nil
}

// read dispatches the init's messages until the channel closes.
func (i *initConn) read() {
	buf := make([]byte, 64<<10)
	for {
		m, f, err := i.c.recv(buf)
		if err != nil {
			close(i.msgs)
			return
		}
		if m.Op == "socket" {
			i.sockCh <- sockReply{f, m.Err}
			continue
		}
		i.msgs <- m
	}
}

// socket returns a socket created in CMD's network namespace.
func (i *initConn) socket(family, typ, proto int) (*os.File, error) {
	i.sockMu.Lock()
	defer i.sockMu.Unlock()
	if err := i.c.send(ctlMsg{Op: "socket", Family: family, Type: typ, Proto: proto}, nil); err != nil {
		return nil, err
	}
	select {
	case r := <-i.sockCh:
		if r.err != "" {
			return nil, errors.New(r.err)
		}
		return r.f, nil
	case <-time.After(5 * time.Second):
		return nil, errors.New("the namespace init does not answer")
	}
}

func (i *initConn) start() error { return i.c.send(ctlMsg{Op: "start"}, nil) }

func (i *initConn) signal(s syscall.Signal) { _ = i.c.send(ctlMsg{Op: "signal", Signal: int(s)}, nil) }

// close ends the control channel (the init then kills CMD if it still
// runs, and exits) and waits for the init.
func (i *initConn) close() {
	i.c.c.Close()
	done := make(chan struct{})
	go func() { _ = i.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = i.cmd.Process.Kill() // stuck in its setup
		<-done
	}
}

// explain turns a failure to set the namespaces up into the reason the
// machine gives, with its fix, when Check finds one. Otherwise it is
// still a user error: something of this machine (a container's seccomp
// profile, a security module) forbids what the mode needs, and the user's
// way out is the proxy mode.
func explain(err error) error {
	if d := Check(); d != nil {
		return fmt.Errorf("%w (%v)", d, err)
	}
	return errdefs.User("this machine does not let tether set up CMD's network namespace (%v): inside a container, its seccomp profile or missing privileges may forbid user namespaces; `--network proxy` works without namespaces", err)
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
