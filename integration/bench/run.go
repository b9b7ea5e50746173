package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// runRow is one figure of CMD under `tether run`, over each path, against
// the same figure of the raw port-forward to the same pod.
type runRow struct {
	name string
	base clientResult
	// run holds the figure over each path, in the order of tunnelPaths.
	run     []clientResult
	latency bool // compare p50/p99, else MiB/s
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
	path := "" // --path of the runs, when set
	runArgs := func(flags ...string) []string {
		args := []string{"run", "deploy/orders", "-q", "--network", "proxy", "--kubeconfig", o.kubeconfig, "-n", o.namespace}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		if path != "" {
			args = append(args, "--path", path)
		}
		return append(append(args, flags...), "--")
	}
	nsArgs := func(cmd ...string) []string {
		args := []string{"run", "deploy/orders", "-q", "--network", "namespace", "--kubeconfig", ns.kubeconfig, "-n", o.namespace}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		if path != "" {
			args = append(args, "--path", path)
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
	// per[kind][mode][path]: the baseline has one path (index 0).
	per := make([][3][][]clientResult, len(kinds))
	for i := range per {
		for mode := range per[i] {
			per[i][mode] = make([][]clientResult, len(tunnelPaths))
		}
	}
	var lookups []clientResult
	for range o.rounds {
		for i, k := range kinds {
			v, err := runclient(base, k.base...)
			if err != nil {
				return r, err
			}
			per[i][base][0] = append(per[i][base][0], v)
			for p, tp := range tunnelPaths {
				path = tp
				for _, mode := range []int{proxy, namespace} {
					v, err := runclient(mode, k.run...)
					if err != nil {
						path = ""
						return r, fmt.Errorf("--path %s: %w", tp, err)
					}
					per[i][mode][p] = append(per[i][mode][p], v)
				}
				path = ""
			}
		}
		v, err := runclient(namespace, "-mode", "dns", "-name", "orders", "-n", "200")
		if err != nil {
			return r, err
		}
		lookups = append(lookups, v)
	}
	for i, k := range kinds {
		b := medianResult(per[i][base][0])
		pr, nr := runRow{name: k.name, latency: k.latency, base: b}, runRow{name: k.name, latency: k.latency, base: b}
		for p := range tunnelPaths {
			pr.run = append(pr.run, medianResult(per[i][proxy][p]))
			nr.run = append(nr.run, medianResult(per[i][namespace][p]))
		}
		r.rows, r.nsRows = append(r.rows, pr), append(r.nsRows, nr)
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
