package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// nsWithIdleConns reads the namespace mode's daemon RSS with a run open,
// then the daemon's and the `tether run` process's with 1,000 idle
// connections from CMD to the Service by name.
func nsWithIdleConns(ctx context.Context, ns *nsRunner, nsTether func(...string) *exec.Cmd, r *runResults) error {
	pid, err := daemonPIDOf(ns.cmd(ctx, "", ns.tether, "status", "-o", "json", "--kubeconfig", ns.kubeconfig))
	if err != nil {
		return err
	}
	c0 := nsTether("sleep", "3")
	if err := c0.Start(); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	r.ns.daemonRSSIdle = rss(pid)
	if err := c0.Wait(); err != nil {
		return err
	}
	c := nsTether(ns.client, "-mode", "idle", "-n", "1000", "-addr", "orders:80")
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("runclient idle: %w", err)
	}
	var res clientResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return fmt.Errorf("runclient idle: %w: %s", err, line)
	}
	if res.Errors > 0 {
		return fmt.Errorf("runclient idle: %d of 1000 connections failed: %s", res.Errors, res.First)
	}
	r.ns.conns = res.Open
	time.Sleep(2 * time.Second) // let the connections settle
	r.ns.daemonRSSConns, r.ns.runRSS = rss(pid), rss(c.Process.Pid)
	return nil
}

// daemonWithIdleConns reads the daemon's RSS with a run open, then with
// 1,000 idle connections through the run's --forward.
func daemonWithIdleConns(ctx context.Context, o options, tmp string, tether func(...string) *exec.Cmd, runArgs func(...string) []string,
	client string, r *runResults) error {
	pid, err := daemonPID(ctx, o, tmp)
	if err != nil {
		return err
	}
	// The daemon with a run open and no connection, first: Go keeps the
	// memory it once used.
	c0 := tether(append(runArgs(), "sleep", "3")...)
	if err := c0.Start(); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	r.daemonRSSIdle = rss(pid)
	if err := c0.Wait(); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := tether(append(runArgs("--forward", fmt.Sprintf("svc/orders:80:%d", port)),
		client, "-mode", "idle", "-n", "1000", "-addr", fmt.Sprintf("127.0.0.1:%d", port))...)
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("runclient idle: %w", err)
	}
	var res clientResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return fmt.Errorf("runclient idle: %w: %s", err, line)
	}
	if res.Errors > 0 {
		return fmt.Errorf("runclient idle: %d of 1000 connections failed: %s", res.Errors, res.First)
	}
	r.idleConn = res.Open
	time.Sleep(2 * time.Second) // let the connections settle
	r.daemonRSSConns = rss(pid)
	return nil
}

func daemonPID(ctx context.Context, o options, tmp string) (int, error) {
	c := exec.CommandContext(ctx, o.tetherBin, "status", "-o", "json", "--kubeconfig", o.kubeconfig)
	c.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+tmp)
	return daemonPIDOf(c)
}

// daemonPIDOf runs c, a `tether status -o json`, and reads the daemon's pid.
func daemonPIDOf(c *exec.Cmd) (int, error) {
	out, err := c.Output()
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`"pid":\s*(\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no daemon pid in %s", out)
	}
	return strconv.Atoi(string(m[1]))
}

// rss is a process's resident memory in bytes (Linux), 0 when unknown.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
