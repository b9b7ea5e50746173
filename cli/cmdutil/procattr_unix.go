//go:build !windows

package cmdutil

import "syscall"

// detached makes the daemon a session leader, so it outlives the
// terminal and the command that started it.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
