package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
)

// clientResult is runclient's one JSON line.
type clientResult struct {
	P50    time.Duration `json:"p50"`
	P99    time.Duration `json:"p99"`
	Errors int           `json:"errors"`
	N      int           `json:"n"`
	MiBps  float64       `json:"mibps"`
	Open   int           `json:"open"`
	First  string        `json:"firstError"`
}

// runRow is one figure of CMD under `tether run` against the same figure
// of the raw port-forward to the same pod.
type runRow struct {
	name      string
	base, run clientResult
	latency   bool // compare p50/p99, else MiB/s
}

// runResults are the figures of `tether run` in proxy and namespace modes.
type runResults struct {
	rows, nsRows                  []runRow
	runTrue, nsRunTrue            time.Duration // `tether run -- true`, the agent in place
	dns                           clientResult  // a Service name lookup from CMD, namespace mode
	idleConn                      int
	daemonRSSIdle, daemonRSSConns int64
	ns                            nsIdle
	profiles                      string // the folder of the profiles, when asked
}

// nsIdle is the namespace mode's memory with idle connections open.
type nsIdle struct {
	conns                                 int
	daemonRSSIdle, daemonRSSConns, runRSS int64
}

// Targets of issue 11 for the namespace mode.
var nsTargets = map[string]string{
	"keep-alive request, Service by name, p50":         "<= 1.2x",
	"new connection per request, Service by name, p50": "<= 1.5x, 0 errors",
	"MiB/s":    ">= 0.8x",
	"lookup":   "<= 2 ms",
	"run true": "<= 300 ms",
}

// measureRun runs runclient, a static Go binary, under `tether run
// deploy/orders` in proxy mode (the Service by its short name through the
// proxy) and in namespace mode (the same, through CMD's own network
// namespace; as an unprivileged user when the bench runs as root) and
// against the raw client-go port-forward to the same pod, interleaved
// round by round; then `tether run -- true`, a name lookup, and the
// memory with 1,000 idle connections open. With o.profileDir it then
// profiles the daemon and `tether run` under the latency and bulk rows.
func measureRun(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options) (runResults, error) {
	var r runResults
	tmp, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	client := filepath.Join(tmp, "runclient")
	build := exec.CommandContext(ctx, "go", "build", "-o", client, "./integration/bench/runclient")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return r, fmt.Errorf("build runclient: %w: %s", err, out)
	}
	tetherBin, err := filepath.Abs(o.tetherBin)
	if err != nil {
		return r, err
	}
	ns, err := newNSRunner(tmp, tetherBin, client, o.kubeconfig)
	if err != nil {
		return r, fmt.Errorf("namespace mode: %w", err)
	}
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: tmp}
	defer cli.run(context.Background(), "quit")
	defer ns.cmd(context.Background(), "", ns.tether, "quit").Run()
	runArgs := func(flags ...string) []string {
		args := []string{"run", "deploy/orders", "-q", "--network", "proxy", "--kubeconfig", o.kubeconfig, "-n", o.namespace}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		return append(append(args, flags...), "--")
	}
	nsArgs := func(cmd ...string) []string {
		args := []string{"run", "deploy/orders", "-q", "--network", "namespace", "--kubeconfig", ns.kubeconfig, "-n", o.namespace}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		return append(append(args, "--"), cmd...)
	}
	profileDir := ""
	tether := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, o.tetherBin, args...)
		c.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+tmp)
		if profileDir != "" {
			c.Env = append(c.Env, "TETHER_PROFILE_DIR="+profileDir)
		}
		return c
	}
	nsTether := func(cmd ...string) *exec.Cmd { return ns.cmd(ctx, profileDir, ns.tether, nsArgs(cmd...)...) }
	const (
		base = iota
		proxy
		namespace
	)
	runclient := func(mode int, args ...string) (clientResult, error) {
		var c *exec.Cmd
		switch mode {
		case proxy:
			c = tether(append(runArgs(), append([]string{client}, args...)...)...)
		case namespace:
			c = nsTether(append([]string{ns.client}, args...)...)
		default:
			c = exec.CommandContext(ctx, client, args...)
		}
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			return clientResult{}, fmt.Errorf("runclient %v (mode %d): %w: %s%s", args, mode, err, out, stderr.Bytes())
		}
		var res clientResult
		if err := json.Unmarshal(out, &res); err != nil {
			return res, fmt.Errorf("runclient %v: %w: %s", args, err, out)
		}
		return res, nil
	}
	// The first run adds the inspection agent and starts each daemon; the
	// timed ones reuse them.
	if out, err := tether(append(runArgs(), "true")...).CombinedOutput(); err != nil {
		return r, fmt.Errorf("tether run: %w: %s", err, out)
	}
	if out, err := nsTether("true").CombinedOutput(); err != nil {
		return r, fmt.Errorf("tether run --network namespace: %w: %s", err, out)
	}
	var trues, nsTrues []time.Duration
	for range o.rounds {
		t0 := time.Now()
		if out, err := tether(append(runArgs(), "true")...).CombinedOutput(); err != nil {
			return r, fmt.Errorf("tether run: %w: %s", err, out)
		}
		trues = append(trues, time.Since(t0))
		t0 = time.Now()
		if out, err := nsTether("true").CombinedOutput(); err != nil {
			return r, fmt.Errorf("tether run --network namespace: %w: %s", err, out)
		}
		nsTrues = append(nsTrues, time.Since(t0))
	}
	r.runTrue, r.nsRunTrue = medianDuration(trues), medianDuration(nsTrues)

	pod, err := readyOrdersPod(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	pfAddr, stop, err := cluster.ForwardPort(ctx, rc, o.namespace, pod.Name, 8080)
	if err != nil {
		return r, err
	}
	defer stop()
	svc, err := cs.CoreV1().Services(o.namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return r, err
	}
	n := strconv.Itoa(o.requests)
	size := strconv.FormatInt(o.bulkBytes, 10)
	kinds := []struct {
		name    string
		latency bool
		base    []string
		run     []string
	}{
		{"keep-alive request, Service by name", true,
			[]string{"-mode", "keepalive", "-n", n, "-url", "http://" + pfAddr + "/orders/7"},
			[]string{"-mode", "keepalive", "-n", n, "-url", "http://orders/orders/7"}},
		{"new connection per request, Service by name", true,
			[]string{"-mode", "newconn", "-n", n, "-url", "http://" + pfAddr + "/orders/7"},
			[]string{"-mode", "newconn", "-n", n, "-url", "http://orders/orders/7"}},
		// The same without the name lookup each connection makes.
		{"new connection per request, ClusterIP", true,
			[]string{"-mode", "newconn", "-n", n, "-url", "http://" + pfAddr + "/orders/7"},
			[]string{"-mode", "newconn", "-n", n, "-url", "http://" + svc.Spec.ClusterIP + "/orders/7"}},
		{fmt.Sprintf("download %d MiB", o.bulkBytes>>20), false,
			[]string{"-mode", "download", "-bytes", size, "-url", "http://" + pfAddr + "/bytes"},
			[]string{"-mode", "download", "-bytes", size, "-url", "http://orders/bytes"}},
		{fmt.Sprintf("upload %d MiB", o.bulkBytes>>20), false,
			[]string{"-mode", "upload", "-bytes", size, "-url", "http://" + pfAddr + "/upload"},
			[]string{"-mode", "upload", "-bytes", size, "-url", "http://orders/upload"}},
	}
	per := make([][3][]clientResult, len(kinds))
	var lookups []clientResult
	for range o.rounds {
		for i, k := range kinds {
			for mode, args := range [][]string{k.base, k.run, k.run} {
				v, err := runclient(mode, args...)
				if err != nil {
					return r, err
				}
				per[i][mode] = append(per[i][mode], v)
			}
		}
		v, err := runclient(namespace, "-mode", "dns", "-name", "orders", "-n", "200")
		if err != nil {
			return r, err
		}
		lookups = append(lookups, v)
	}
	for i, k := range kinds {
		b := medianResult(per[i][base])
		r.rows = append(r.rows, runRow{name: k.name, latency: k.latency, base: b, run: medianResult(per[i][proxy])})
		r.nsRows = append(r.nsRows, runRow{name: k.name, latency: k.latency, base: b, run: medianResult(per[i][namespace])})
	}
	r.dns = medianResult(lookups)
	if err := daemonWithIdleConns(ctx, o, tmp, tether, runArgs, client, &r); err != nil {
		return r, fmt.Errorf("idle connections: %w", err)
	}
	if err := nsWithIdleConns(ctx, ns, nsTether, &r); err != nil {
		return r, fmt.Errorf("idle connections, namespace mode: %w", err)
	}
	if o.profileDir == "" {
		return r, nil
	}
	// Profiles: for each of the latency and bulk rows and each mode, a
	// fresh daemon and run with TETHER_PROFILE_DIR, then quit so that the
	// daemon writes its profiles. The timed rows above ran unprofiled.
	r.profiles, err = filepath.Abs(o.profileDir)
	if err != nil {
		return r, err
	}
	for _, i := range []int{0, 1, 3, 4} { // keep-alive, new connection, download, upload
		k := kinds[i]
		for _, mode := range []int{proxy, namespace} {
			name := [...]string{"", "proxy", "namespace"}[mode] + "-" + k.run[1]
			profileDir = filepath.Join(r.profiles, name)
			quit := func() error { return tether("quit").Run() }
			if mode == namespace {
				quit = func() error { return ns.cmd(ctx, "", ns.tether, "quit").Run() }
			}
			if err := ns.mkdirFor(profileDir); err != nil {
				return r, err
			}
			_ = quit()
			if _, err := runclient(mode, k.run...); err != nil {
				return r, fmt.Errorf("profile %s: %w", name, err)
			}
			profileDir = ""
			if err := quit(); err != nil {
				return r, fmt.Errorf("profile %s: quit: %w", name, err)
			}
		}
	}
	return r, nil
}

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

// medianResult takes each figure's median; errors are summed.
func medianResult(rs []clientResult) clientResult {
	var p50s, p99s []time.Duration
	var mibs []float64
	out := clientResult{}
	for _, r := range rs {
		p50s, p99s, mibs = append(p50s, r.P50), append(p99s, r.P99), append(mibs, r.MiBps)
		out.Errors += r.Errors
		out.N += r.N + r.Errors
		if out.First == "" {
			out.First = r.First
		}
	}
	out.P50, out.P99 = medianDuration(p50s), medianDuration(p99s)
	sortFloats(mibs)
	out.MiBps = mibs[len(mibs)/2]
	return out
}

func sortFloats(f []float64) {
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j] < f[j-1]; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}

func printRun(w io.Writer, r runResults, o options) {
	fmt.Fprintf(w, "\n== tether run, proxy mode: runclient (a static Go binary) under `tether run deploy/orders`, Service by name,\n"+
		"   against the raw client-go port-forward to the same pod; medians of %d interleaved rounds\n", o.rounds)
	printRunRows(w, r.rows, false)
	fmt.Fprintf(w, "`tether run deploy/orders -- true`, agent in place, daemon running: %s\n", r.runTrue.Round(time.Millisecond))
	fmt.Fprintf(w, "daemon RSS: %.1f MiB with a run open; %.1f MiB with %d idle connections through the run's --forward\n",
		mib(r.daemonRSSIdle), mib(r.daemonRSSConns), r.idleConn)

	fmt.Fprintf(w, "\n== tether run, namespace mode (as user %s when run as root): the same runclient, the same rounds and baseline\n", nsUser)
	printRunRows(w, r.nsRows, true)
	fmt.Fprintf(w, "Service name lookup from CMD (`orders`, the pod's search list), p50: %s (p99 %s, %d errors of %d)  target %s\n",
		r.dns.P50.Round(time.Microsecond), r.dns.P99.Round(time.Microsecond), r.dns.Errors, r.dns.N, nsTargets["lookup"])
	fmt.Fprintf(w, "`tether run --network namespace deploy/orders -- true`, agent in place, daemon running: %s  target %s\n",
		r.nsRunTrue.Round(time.Millisecond), nsTargets["run true"])
	fmt.Fprintf(w, "daemon RSS: %.1f MiB with a run open; %.1f MiB with %d idle connections from CMD; the `tether run` process then: %.1f MiB\n",
		mib(r.ns.daemonRSSIdle), mib(r.ns.daemonRSSConns), r.ns.conns, mib(r.ns.runRSS))
	if r.profiles != "" {
		fmt.Fprintf(w, "\nprofiles (CPU, block, mutex, heap of the daemon and of `tether run`, one folder per row and mode): %s\n", r.profiles)
	}
}

func printRunRows(w io.Writer, rows []runRow, targets bool) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	head := "what\tbaseline\ttether run\tratio\terrors (baseline / run)\t"
	if targets {
		head += "target\t"
	}
	fmt.Fprintln(tw, head)
	target := func(k string) string {
		if !targets {
			return ""
		}
		return nsTargets[k] + "\t"
	}
	for _, row := range rows {
		errs := fmt.Sprintf("%d of %d / %d of %d", row.base.Errors, row.base.N, row.run.Errors, row.run.N)
		if row.latency {
			fmt.Fprintf(tw, "%s, p50\t%s\t%s\t%.2fx\t%s\t%s\n", row.name, row.base.P50.Round(time.Microsecond), row.run.P50.Round(time.Microsecond),
				float64(row.run.P50)/float64(row.base.P50), errs, target(row.name+", p50"))
			fmt.Fprintf(tw, "%s, p99\t%s\t%s\t%.2fx\t\t%s\n", row.name, row.base.P99.Round(time.Microsecond), row.run.P99.Round(time.Microsecond),
				float64(row.run.P99)/float64(row.base.P99), target(""))
		} else {
			fmt.Fprintf(tw, "%s, MiB/s\t%.1f\t%.1f\t%.2fx\t\t%s\n", row.name, row.base.MiBps, row.run.MiBps, row.run.MiBps/row.base.MiBps, target("MiB/s"))
		}
	}
	tw.Flush()
	for _, row := range rows {
		if row.run.Errors > 0 {
			fmt.Fprintf(w, "%s: first error under tether run: %s\n", row.name, row.run.First)
		}
	}
	fmt.Fprintln(w, "latency ratio < 1 and throughput ratio > 1 are faster than the baseline")
}
