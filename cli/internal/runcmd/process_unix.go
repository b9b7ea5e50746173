//go:build !windows

package runcmd

import (
	"os"
	"os/exec"
	"syscall"
)

var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

func isInterrupt(s os.Signal) bool { return s == syscall.SIGINT || s == syscall.SIGQUIT }

func signalProcess(p *os.Process, s os.Signal) { p.Signal(s) }

func exitStatus(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}
