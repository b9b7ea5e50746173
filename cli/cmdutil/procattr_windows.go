//go:build windows

package cmdutil

import "syscall"

// detached starts the daemon in a new process group without a console, so
// it outlives the console and the command that started it.
func detached() *syscall.SysProcAttr {
	const detachedProcess = 0x00000008 // DETACHED_PROCESS
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess, HideWindow: true}
}
