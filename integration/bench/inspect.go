package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
)

// inspectResults are the figures of the inspection commands.
type inspectResults struct {
	apiRoundTrip, execLookup time.Duration
	traceCold, traceWarm     time.Duration
	firstPacketCold          time.Duration
	firstPacketWarm          time.Duration
	levels                   []captureLevel
}

// captureLevel is one load level of the capture measurement.
type captureLevel struct {
	loops             int
	seconds           float64
	received, dropped uint64
	agentCPU, appCPU  float64 // cores
	requestsPerSec    float64
}

// measureInspect measures trace and capture on the orders app and the
// client pod that measureTether left in the namespace.
func measureInspect(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options, client string) (inspectResults, error) {
	var r inspectResults
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	if _, err := cli.run(ctx, "connect"); err != nil {
		return r, err
	}
	orders, err := readyOrdersPod(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	var api, lookups, warm []time.Duration
	for range o.rounds {
		t0 := time.Now()
		if _, err := cs.Discovery().ServerVersion(); err != nil {
			return r, err
		}
		api = append(api, time.Since(t0))
		t0 = time.Now()
		if _, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "lookup", "orders"); err != nil {
			return r, fmt.Errorf("lookup by exec: %w", err)
		}
		lookups = append(lookups, time.Since(t0))
	}
	r.apiRoundTrip, r.execLookup = medianDuration(api), medianDuration(lookups)

	// trace: the first adds the agent to the client pod; the rest reuse it.
	t0 := time.Now()
	if out, err := cli.run(ctx, "trace", "pod/"+client, "svc/orders"); err != nil {
		return r, fmt.Errorf("trace: %w\n%s", err, out)
	}
	r.traceCold = time.Since(t0)
	for range o.rounds {
		t0 := time.Now()
		if out, err := cli.run(ctx, "trace", "pod/"+client, "svc/orders"); err != nil {
			return r, fmt.Errorf("trace: %w\n%s", err, out)
		}
		warm = append(warm, time.Since(t0))
	}
	r.traceWarm = medianDuration(warm)

	// Time to the first decoded packet, with requests flowing.
	url := "http://orders." + o.namespace + ".svc.cluster.local/orders/7"
	loadCtx, stopLoad := context.WithCancel(ctx)
	go load(loadCtx, rc, o.namespace, client, url, 1)
	r.firstPacketCold, err = firstPacket(ctx, cli, orders.Name)
	if err != nil {
		stopLoad()
		return r, err
	}
	var firsts []time.Duration
	for range o.rounds {
		d, err := firstPacket(ctx, cli, orders.Name)
		if err != nil {
			stopLoad()
			return r, err
		}
		firsts = append(firsts, d)
	}
	stopLoad()
	r.firstPacketWarm = medianDuration(firsts)

	// Capture rate: everything on the pod's interface to pcap, under 1, 2
	// and 4 loops of sequential requests.
	for _, loops := range []int{1, 2, 4} {
		lv, err := captureAtLoad(ctx, rc, cli, o, client, orders, url, loops)
		if err != nil {
			return r, err
		}
		r.levels = append(r.levels, lv)
	}
	return r, nil
}

func readyOrdersPod(ctx context.Context, cs *kubernetes.Clientset, ns string) (*corev1.Pod, error) {
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(time.Second) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil {
			return nil, err
		}
		var ready []*corev1.Pod
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && isReady(p) {
				ready = append(ready, p)
			}
		}
		if len(ready) == 1 && len(pods.Items) == 1 {
			return ready[0], nil
		}
	}
	return nil, fmt.Errorf("no single ready orders pod in %s", ns)
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// load runs loops of sequential requests from the client pod until ctx
// ends, and returns how many requests completed.
func load(ctx context.Context, rc *rest.Config, ns, client, url string, loops int) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				const n = 2000
				if _, err := cluster.Exec(ctx, rc, ns, client, "/tether-demo", "latency", url, strconv.Itoa(n)); err == nil {
					mu.Lock()
					total += n
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return total
}

// firstPacket times `tether capture` from start to its first summary line.
func firstPacket(ctx context.Context, cli tetherCLI, pod string) (time.Duration, error) {
	t0 := time.Now()
	cmd := cli.cmd(ctx, "capture", pod, "--filter", "tcp port 8080", "--count", "1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(out)
	var d time.Duration
	if sc.Scan() {
		d = time.Since(t0)
	}
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil || d == 0 {
		return 0, fmt.Errorf("capture: %v\n%s", err, stderr.String())
	}
	return d, nil
}

var statsLine = regexp.MustCompile(`kernel: (\d+) received by the filter, (\d+) dropped`)

// captureAtLoad captures everything on the orders pod's interface as pcap
// for a few seconds under loops of requests, and reads the agent's and
// the app's CPU time from /proc (the cluster runs on this machine).
func captureAtLoad(ctx context.Context, rc *rest.Config, cli tetherCLI, o options, client string, orders *corev1.Pod, url string, loops int) (captureLevel, error) {
	lv := captureLevel{loops: loops}
	agentPID, err := findProcess("--tunnel", "POD_NAME="+orders.Name)
	if err != nil {
		return lv, err
	}
	appPID, err := findProcess("serve", "POD_NAME="+orders.Name)
	if err != nil {
		return lv, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() { done <- load(loadCtx, rc, o.namespace, client, url, loops) }()
	time.Sleep(2 * time.Second) // let the load reach its pace
	agent0, app0 := cpuSeconds(agentPID), cpuSeconds(appPID)
	t0 := time.Now()
	const window = 5 * time.Second
	cmd := cli.cmd(ctx, "capture", orders.Name, "-w", "-", "--duration", window.String())
	cmd.Stdout = io.Discard
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	elapsed := time.Since(t0)
	agent1, app1 := cpuSeconds(agentPID), cpuSeconds(appPID)
	stopLoad()
	requests := <-done
	if err != nil {
		return lv, fmt.Errorf("capture: %v\n%s", err, stderr.String())
	}
	m := statsLine.FindStringSubmatch(stderr.String())
	if m == nil {
		return lv, fmt.Errorf("capture printed no kernel statistics:\n%s", stderr.String())
	}
	lv.received, _ = strconv.ParseUint(m[1], 10, 64)
	lv.dropped, _ = strconv.ParseUint(m[2], 10, 64)
	lv.seconds = window.Seconds()
	lv.agentCPU = (agent1 - agent0) / elapsed.Seconds()
	lv.appCPU = (app1 - app0) / elapsed.Seconds()
	// Requests are counted per finished batch, over the whole load run:
	// an estimate of the request rate, not an exact count in the window.
	lv.requestsPerSec = float64(requests) / (elapsed.Seconds() + 2)
	return lv, nil
}

// findProcess returns the PID of the process whose command line contains
// arg and whose environment contains env.
func findProcess(arg, env string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err1 := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, err2 := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err1 != nil || err2 != nil {
			continue
		}
		if strings.Contains(string(cmdline), arg) && strings.Contains("\x00"+string(environ)+"\x00", "\x00"+env+"\x00") {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process with %q and %s on this machine (the bench reads CPU time from /proc: run it on the cluster's node, as root)", arg, env)
}

// cpuSeconds is a process's user+system CPU time.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

func medianDuration(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// printInspect prints the inspection figures.
func printInspect(w io.Writer, r inspectResults) {
	fmt.Fprintln(w, "\n== inspect: trace and capture")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\ttime\tratio to exec lookup\t")
	for _, t := range []timing{
		{"baseline: kubectl-exec one DNS lookup in the client pod", r.execLookup},
		{"API round trip, GET /version", r.apiRoundTrip},
		{"tether trace, first (adds the agent to the pod)", r.traceCold},
		{"tether trace, agent running (median)", r.traceWarm},
		{"tether capture: command to first packet, first (adds the agent)", r.firstPacketCold},
		{"tether capture: command to first packet, agent running (median)", r.firstPacketWarm},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%.1fx\t\n", t.name, t.d.Round(time.Millisecond), float64(t.d)/float64(r.execLookup))
	}
	tw.Flush()
	fmt.Fprintln(w, "\n   capture to pcap (no filter, 5 s) under loops of sequential requests; CPU in cores, baseline: the app serving the same load")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "loops\trequests/s\tpackets/s captured\tdropped\tagent CPU\tapp CPU (baseline)\tratio\t")
	for _, lv := range r.levels {
		ratio := 0.0
		if lv.appCPU > 0 {
			ratio = lv.agentCPU / lv.appCPU
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%d\t%.3f\t%.3f\t%.2fx\t\n", lv.loops, lv.requestsPerSec, float64(lv.received)/lv.seconds, lv.dropped, lv.agentCPU, lv.appCPU, ratio)
	}
	tw.Flush()
}
