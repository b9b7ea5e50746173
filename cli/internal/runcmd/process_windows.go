package runcmd

import (
	"os"
	"os/exec"
)

// On Windows, Ctrl-C reaches every process of the console itself; tether
// cannot send a console control event to one process, so other stop
// requests end the process.
var forwarded = []os.Signal{os.Interrupt}

func isInterrupt(s os.Signal) bool { return s == os.Interrupt }

func signalProcess(p *os.Process, _ os.Signal) { p.Kill() }

func exitStatus(ee *exec.ExitError) int { return ee.ExitCode() }
