package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaybeInit runs the namespace init and exits when this process was
// started as one (argv[1] == InitArg); otherwise it returns at once. Call
// it first thing in main (and in TestMain of tests that use Run).
func MaybeInit() {
	if len(os.Args) < 2 || os.Args[1] != InitArg {
		return
	}
	os.Exit(initMain())
}

// initMain is the init: it runs in the new namespaces with CAP_NET_ADMIN
// and CAP_SYS_ADMIN there, and its fd 3 is the control channel.
func initMain() int {
	c, err := fileCtl(os.NewFile(3, "ctl"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tether netns init:", err)
		return 125
	}
	// Signals from the terminal reach CMD directly (same process group);
	// Run forwards the others over the control channel. Catching them
	// (rather than ignoring) keeps CMD's dispositions at their defaults.
	signal.Notify(make(chan os.Signal, 1), unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)

	buf := make([]byte, maxCtlMsg)
	m, _, err := c.recv(buf)
	if err != nil || m.Op != "config" || m.Config == nil {
		fmt.Fprintln(os.Stderr, "tether netns init: no config:", err)
		return 125
	}
	cfg := m.Config
	if cfg.Probe {
		if err := setupLoopback(); err != nil {
			_ = c.send(ctlMsg{Op: "failed", Err: err.Error()}, nil)
			return 125
		}
		_ = c.send(ctlMsg{Op: "ready"}, nil)
		return 0
	}
	// CMD runs as the same user: it must not be able to ptrace the init or
	// read its memory (the init keeps its capabilities in the namespace).
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	tun, err := setupNamespaces(cfg)
	if err != nil {
		_ = c.send(ctlMsg{Op: "failed", Err: err.Error()}, nil)
		return 125
	}
	if err := c.send(ctlMsg{Op: "ready"}, tun); err != nil {
		return 125
	}
	tun.Close()

	var cmd *exec.Cmd
	exited := make(chan int, 1)
	for {
		m, _, err := c.recv(buf)
		if err != nil {
			// Run is gone: CMD must not outlive it.
			if cmd != nil && cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
			return 125
		}
		switch m.Op {
		case "start":
			if cmd != nil {
				continue
			}
			cmd, err = startCmd(cfg)
			if err != nil {
				_ = c.send(ctlMsg{Op: "exit", Status: 127, Err: err.Error()}, nil)
				return 127
			}
			_ = c.send(ctlMsg{Op: "started", Pid: cmd.Process.Pid}, nil)
			go func() {
				_ = cmd.Wait()
				st := exitStatus(cmd.ProcessState)
				_ = c.send(ctlMsg{Op: "exit", Status: st}, nil)
				exited <- st
			}()
			go func() { os.Exit(<-exited) }()
		case "socket":
			typ := m.Type
			if typ == 0 {
				typ = unix.SOCK_STREAM
			}
			fd, err := unix.Socket(m.Family, typ|unix.SOCK_CLOEXEC, m.Proto)
			if err != nil {
				_ = c.send(ctlMsg{Op: "socket", Err: err.Error()}, nil)
				continue
			}
			f := os.NewFile(uintptr(fd), "socket")
			_ = c.send(ctlMsg{Op: "socket"}, f)
			f.Close()
		case "signal":
			if cmd != nil && cmd.Process != nil {
				_ = cmd.Process.Signal(syscall.Signal(m.Signal))
			}
		}
	}
}

// startCmd starts CMD without any capability and with no_new_privs. Both
// are per-thread attributes, so they are set on a locked thread that then
// forks CMD.
func startCmd(cfg *initConfig) (*exec.Cmd, error) {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		data[0].Inheritable, data[1].Inheritable = 0, 0
		_ = unix.Capset(&hdr, &data[0])
	}
	cmd := exec.Command(cfg.Path, cfg.Argv[1:]...)
	cmd.Args[0] = cfg.Argv[0]
	cmd.Env = cfg.Env
	cmd.Dir = cfg.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// exitStatus is a shell's view of how a process ended: its code, or
// 128+signal.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

var errNoTUN = errors.New("create the TUN device")
