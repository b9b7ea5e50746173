package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinAgents runs every thread of the agents on the last CPU and every
// thread of this process on the others (threads started later inherit
// their creator's set).
func pinAgents(agents map[string]*benchAgent) error {
	n := runtime.NumCPU()
	if n < 2 {
		return fmt.Errorf("-pin-agents needs 2 CPUs, this machine has %d", n)
	}
	var last, rest unix.CPUSet
	last.Set(n - 1)
	for i := range n - 1 {
		rest.Set(i)
	}
	for _, a := range agents {
		if err := pinProcess(a.cmd.Process.Pid, &last); err != nil {
			return err
		}
	}
	return pinProcess(os.Getpid(), &rest)
}

func pinProcess(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil {
			return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}
