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
	idle, conns, err := idleRSS(pid, nsTether("sleep", "3"), nsTether(ns.client, "-mode", "idle", "-n", "1000", "-addr", "orders:80"))
	if err != nil {
		return err
	}
	r.ns.daemonRSSIdle, r.ns.daemonRSSConns, r.ns.runRSS, r.ns.conns = idle.daemon, conns.daemon, conns.run, conns.open
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	idle, conns, err := idleRSS(pid, tether(append(runArgs(), "sleep", "3")...),
		tether(append(runArgs("--forward", fmt.Sprintf("svc/orders:80:%d", port)),
			client, "-mode", "idle", "-n", "1000", "-addr", fmt.Sprintf("127.0.0.1:%d", port))...))
	if err != nil {
		return err
	}
	r.daemonRSSIdle, r.daemonRSSConns, r.idleConn = idle.daemon, conns.daemon, conns.open
	return nil
}

// rssReading is the daemon's and the run's resident memory at one moment.
type rssReading struct {
	daemon, run int64
	open        int // connections runclient holds open
}

// idleRSS reads the daemon's (pid) RSS while empty, a run with no
// connection (Go keeps the memory it once used, so it goes first), then
// while hold, a runclient -mode idle under tether run, keeps its
// connections open.
func idleRSS(pid int, empty, hold *exec.Cmd) (idle, conns rssReading, err error) {
	if err := empty.Start(); err != nil {
		return idle, conns, err
	}
	time.Sleep(2 * time.Second)
	idle.daemon = rss(pid)
	if err := empty.Wait(); err != nil {
		return idle, conns, err
	}
	stdin, err := hold.StdinPipe()
	if err != nil {
		return idle, conns, err
	}
	stdout, err := hold.StdoutPipe()
	if err != nil {
		return idle, conns, err
	}
	if err := hold.Start(); err != nil {
		return idle, conns, err
	}
	defer hold.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return idle, conns, fmt.Errorf("runclient idle: %w", err)
	}
	var res clientResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return idle, conns, fmt.Errorf("runclient idle: %w: %s", err, line)
	}
	if res.Errors > 0 {
		return idle, conns, fmt.Errorf("runclient idle: %d of 1000 connections failed: %s", res.Errors, res.First)
	}
	time.Sleep(2 * time.Second) // let the connections settle
	conns = rssReading{daemon: rss(pid), run: rss(hold.Process.Pid), open: res.Open}
	return idle, conns, nil
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
