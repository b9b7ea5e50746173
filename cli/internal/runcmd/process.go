package runcmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"

	"golang.org/x/term"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Process is the command to run for the user.
type Process struct {
	Path string   // found with exec.LookPath
	Args []string // Args[0] is the name as the user wrote it
	Env  []string
	// Mounts are files bind-mounted read-only at paths of CMD's view
	// (path -> local path): the namespace mode only.
	Mounts map[string]string
	// Stdin, Stdout and Stderr are the terminal's, as given to tether.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Interactive: stdin is a terminal, whose Ctrl-C reaches the process
	// directly (it shares tether's process group); tether then does not
	// send SIGINT again.
	Interactive bool
}

// Exec runs p to its end and returns its exit status (128+n when a signal
// n ended it). The signals that would end tether (SIGINT, SIGTERM, SIGHUP)
// go to the process instead, and tether waits for it: tearing the run
// down is the caller's, after Exec returns.
func Exec(p Process) (int, error) {
	cmd := &exec.Cmd{Path: p.Path, Args: p.Args, Env: p.Env, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, errdefs.User("start %s: %v", p.Args[0], err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if !(p.Interactive && isInterrupt(s)) {
					signalProcess(cmd.Process, s)
				}
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitStatus(ee), nil
	}
	return 0, fmt.Errorf("wait for %s: %w", p.Args[0], err)
}

// LookPath finds CMD as a shell would, or says it is not there.
func LookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", errdefs.User("CMD %q: %v (give a program on PATH, or a path to one)", name, errors.Unwrap(err))
	}
	return path, nil
}

// IsTerminal: r is a terminal (not merely a character device such as
// /dev/null, whose reader gets no Ctrl-C from anywhere).
func IsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
