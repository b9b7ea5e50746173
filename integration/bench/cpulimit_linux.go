package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuLimit holds a process to a CPU quota the way the kubelet holds a
// container to its CPU limit: a cgroup whose CFS quota is limit cores
// per 100 ms period (cgroup v1's cpu controller, or v2's cpu.max).
type cpuLimit struct {
	dir string
	v2  bool
}

const cfsPeriod = 100000 // µs, the kubelet's default

// limitCPU moves pid (all its threads) into a new cgroup allowing limit
// cores.
func limitCPU(pid int, limit float64) (*cpuLimit, error) {
	name := fmt.Sprintf("tether-bench-agent-%d", pid)
	quota := int(limit * cfsPeriod)
	var l cpuLimit
	switch {
	case exists("/sys/fs/cgroup/cgroup.controllers"): // v2 only
		if ctl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); !strings.Contains(string(ctl), "cpu") {
			if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0o644); err != nil {
				return nil, fmt.Errorf("enable the cpu controller: %w", err)
			}
		}
		l = cpuLimit{dir: filepath.Join("/sys/fs/cgroup", name), v2: true}
		if err := os.Mkdir(l.dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(l.dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, cfsPeriod)), 0o644); err != nil {
			l.remove()
			return nil, err
		}
	case exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
		l = cpuLimit{dir: filepath.Join("/sys/fs/cgroup/cpu", name)}
		if err := os.Mkdir(l.dir, 0o755); err != nil {
			return nil, err
		}
		for file, v := range map[string]int{"cpu.cfs_period_us": cfsPeriod, "cpu.cfs_quota_us": quota} {
			if err := os.WriteFile(filepath.Join(l.dir, file), []byte(strconv.Itoa(v)), 0o644); err != nil {
				l.remove()
				return nil, err
			}
		}
	default:
		return nil, errors.New("no cgroup cpu controller found under /sys/fs/cgroup")
	}
	if err := os.WriteFile(filepath.Join(l.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		l.remove()
		return nil, fmt.Errorf("move process %d into %s: %w", pid, l.dir, err)
	}
	return &l, nil
}

// throttled reads how many periods the quota ran out and for how long.
func (l *cpuLimit) throttled() (t throttling) {
	b, _ := os.ReadFile(filepath.Join(l.dir, "cpu.stat"))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "nr_throttled":
			t.periods = n
		case "throttled_time": // v1, ns
			t.seconds = float64(n) / 1e9
		case "throttled_usec": // v2
			t.seconds = float64(n) / 1e6
		}
	}
	return t
}

// remove deletes the cgroup once its process has ended.
func (l *cpuLimit) remove() { os.Remove(l.dir) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
