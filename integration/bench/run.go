package main

import (
	"bufio"
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

// runResults are the figures of `tether run` in proxy mode.
type runResults struct {
	rows                          []runRow
	runTrue                       time.Duration // `tether run -- true`, the agent in place
	idleConn                      int
	daemonRSSIdle, daemonRSSConns int64
}

// measureRun runs runclient, a static Go binary, under `tether run
// deploy/orders` (proxy mode: the Service by its short name) and against
// the raw client-go port-forward to the same pod, interleaved round by
// round; then `tether run -- true`, and the daemon's memory with 1,000
// idle connections open through a --forward.
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
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: tmp}
	defer cli.run(context.Background(), "quit")
	runArgs := func(flags ...string) []string {
		args := []string{"run", "deploy/orders", "-q", "--network", "proxy", "--kubeconfig", o.kubeconfig, "-n", o.namespace}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		return append(append(args, flags...), "--")
	}
	tether := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, o.tetherBin, args...)
		c.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+tmp)
		return c
	}
	runclient := func(viaRun bool, args ...string) (clientResult, error) {
		var c *exec.Cmd
		if viaRun {
			c = tether(append(runArgs(), append([]string{client}, args...)...)...)
		} else {
			c = exec.CommandContext(ctx, client, args...)
		}
		out, err := c.Output()
		if err != nil {
			return clientResult{}, fmt.Errorf("runclient %v (through tether run: %v): %w: %s", args, viaRun, err, out)
		}
		var res clientResult
		if err := json.Unmarshal(out, &res); err != nil {
			return res, fmt.Errorf("runclient %v: %w: %s", args, err, out)
		}
		return res, nil
	}
	// The first run adds the inspection agent; the timed ones reuse it.
	if out, err := tether(append(runArgs(), "true")...).CombinedOutput(); err != nil {
		return r, fmt.Errorf("tether run: %w: %s", err, out)
	}
	var trues []time.Duration
	for range o.rounds {
		t0 := time.Now()
		if out, err := tether(append(runArgs(), "true")...).CombinedOutput(); err != nil {
			return r, fmt.Errorf("tether run: %w: %s", err, out)
		}
		trues = append(trues, time.Since(t0))
	}
	r.runTrue = medianDuration(trues)

	pod, err := readyOrdersPod(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	pfAddr, stop, err := cluster.ForwardPort(ctx, rc, o.namespace, pod.Name, 8080)
	if err != nil {
		return r, err
	}
	defer stop()
	n := strconv.Itoa(o.requests)
	bytes := strconv.FormatInt(o.bulkBytes, 10)
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
		{fmt.Sprintf("download %d MiB", o.bulkBytes>>20), false,
			[]string{"-mode", "download", "-bytes", bytes, "-url", "http://" + pfAddr + "/bytes"},
			[]string{"-mode", "download", "-bytes", bytes, "-url", "http://orders/bytes"}},
		{fmt.Sprintf("upload %d MiB", o.bulkBytes>>20), false,
			[]string{"-mode", "upload", "-bytes", bytes, "-url", "http://" + pfAddr + "/upload"},
			[]string{"-mode", "upload", "-bytes", bytes, "-url", "http://orders/upload"}},
	}
	per := make([][2][]clientResult, len(kinds))
	for range o.rounds {
		for i, k := range kinds {
			b, err := runclient(false, k.base...)
			if err != nil {
				return r, err
			}
			v, err := runclient(true, k.run...)
			if err != nil {
				return r, err
			}
			per[i][0], per[i][1] = append(per[i][0], b), append(per[i][1], v)
		}
	}
	for i, k := range kinds {
		r.rows = append(r.rows, runRow{name: k.name, latency: k.latency, base: medianResult(per[i][0]), run: medianResult(per[i][1])})
	}
	if err := daemonWithIdleConns(ctx, o, tmp, tether, runArgs, client, &r); err != nil {
		return r, fmt.Errorf("idle connections: %w", err)
	}
	return r, nil
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
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tbaseline\ttether run\tratio\terrors (baseline / run)\t")
	for _, row := range r.rows {
		errs := fmt.Sprintf("%d of %d / %d of %d", row.base.Errors, row.base.N, row.run.Errors, row.run.N)
		if row.latency {
			fmt.Fprintf(tw, "%s, p50\t%s\t%s\t%.2fx\t%s\t\n", row.name, row.base.P50.Round(time.Microsecond), row.run.P50.Round(time.Microsecond),
				float64(row.run.P50)/float64(row.base.P50), errs)
			fmt.Fprintf(tw, "%s, p99\t%s\t%s\t%.2fx\t\t\n", row.name, row.base.P99.Round(time.Microsecond), row.run.P99.Round(time.Microsecond),
				float64(row.run.P99)/float64(row.base.P99))
		} else {
			fmt.Fprintf(tw, "%s, MiB/s\t%.1f\t%.1f\t%.2fx\t\t\n", row.name, row.base.MiBps, row.run.MiBps, row.run.MiBps/row.base.MiBps)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "latency ratio < 1 and throughput ratio > 1 are faster than the baseline")
	fmt.Fprintf(w, "`tether run deploy/orders -- true`, agent in place, daemon running: %s\n", r.runTrue.Round(time.Millisecond))
	fmt.Fprintf(w, "daemon RSS: %.1f MiB with a run open; %.1f MiB with %d idle connections through the run's --forward\n",
		mib(r.daemonRSSIdle), mib(r.daemonRSSConns), r.idleConn)
}
