package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// egressInterface returns the interface of the default route and its first
// IPv4 address: the node's IP, and the interface the guard rules watch.
func egressInterface() (string, netip.Addr, error) {
	iface, err := defaultRouteInterface()
	if err != nil {
		return "", netip.Addr{}, err
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("interface %s: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return iface, p.Addr(), nil
		}
	}
	return "", netip.Addr{}, fmt.Errorf("interface %s (default route) has no IPv4 address", iface)
}

func defaultRouteInterface() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[1] == "00000000" && fields[0] != "Iface" {
			return fields[0], nil
		}
	}
	return "", errors.New("no IPv4 default route: k3s needs one to pick the node IP")
}

// processAlive reports whether pid runs the executable exe (a reused PID
// running something else does not count).
func processAlive(pid int, exe string) bool {
	if pid <= 0 {
		return false
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// A zombie has exited; field 3 (after the parenthesised name) is its state.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			return false
		}
	}
	return strings.TrimSuffix(got, " (deleted)") == exe
}

func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processesRunning returns the PIDs whose executable is exe.
func processesRunning(exe string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if processAlive(pid, exe) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants returns every process below pid.
func descendants(pid int) []int {
	var out []int
	children, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, c := range children {
		b, _ := os.ReadFile(c)
		for _, f := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(f); err == nil {
				out = append(out, child)
				out = append(out, descendants(child)...)
			}
		}
	}
	return out
}

// mountsUnder returns the mount points below any of roots, deepest first.
func mountsUnder(roots ...string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		mp := unescapeMount(fields[1])
		for _, r := range roots {
			if (mp == r || strings.HasPrefix(mp, r+"/") || strings.HasPrefix(mp, r)) && !seen[mp] {
				seen[mp] = true
				out = append(out, mp)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// unescapeMount undoes the octal escapes /proc/self/mounts uses for spaces.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmount(mp string) error {
	return syscall.Unmount(mp, syscall.MNT_DETACH)
}

// run runs a command and returns its combined output, with the output in
// the error when it fails.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
