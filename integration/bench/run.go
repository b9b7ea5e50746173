package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
)

// runResults are the figures of `tether run` in proxy mode.
type runResults struct {
	baseline, viaRun row
	runTrue          time.Duration // `tether run -- true`, the agent in place
}

// measureRun measures a static Go client under `tether run deploy/orders`
// (proxy mode) against the raw client-go port-forward to the same pod, in
// interleaved rounds: keep-alive requests to the Service by its short name,
// and a bulk download.
func measureRun(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options) (runResults, error) {
	var r runResults
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	demo := strings.TrimSuffix(o.tetherBin, "tether") + "tether-demo"
	run := func(cmd ...string) (string, error) {
		args := []string{"run", "deploy/orders", "-q"}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		args = append(append(args, "--kubeconfig", o.kubeconfig, "-n", o.namespace, "--"), cmd...)
		c := cli.cmd(ctx)
		c.Args = append([]string{c.Args[0]}, args...) // the flags go before --, not after CMD
		out, err := c.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("tether %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	// The first run adds the inspection agent; the timed ones reuse it.
	if out, err := run("true"); err != nil {
		return r, fmt.Errorf("%w: %s", err, out)
	}
	var trues []time.Duration
	for range o.rounds {
		t0 := time.Now()
		if _, err := run("true"); err != nil {
			return r, err
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
	var base, via []row
	for range o.rounds {
		b, err := measure(ctx, "raw port-forward", "http://"+pfAddr, o)
		if err != nil {
			return r, err
		}
		out, err := run("sh", "-c", fmt.Sprintf("%[1]s latency http://orders/orders/7 %[2]d && %[1]s throughput 'http://orders/bytes?n=%[3]d'",
			demo, o.requests, o.bulkBytes))
		if err != nil {
			return r, err
		}
		var v row
		v.p50, v.p99 = parseLatency(out)
		if m := regexp.MustCompile(`mib_per_s ([\d.]+)`).FindStringSubmatch(out); m != nil {
			v.mbPerSec, _ = strconv.ParseFloat(m[1], 64)
		}
		if v.p50 == 0 || v.mbPerSec == 0 {
			return r, fmt.Errorf("tether run: no figures in %q", out)
		}
		base, via = append(base, b), append(via, v)
	}
	r.baseline = median("raw client-go port-forward to the pod (baseline)", base)
	r.viaRun = median("tether run (proxy): CMD -> HTTP proxy -> daemon -> tunnel -> agent -> Service by name", via)
	return r, nil
}

func printRun(w io.Writer, r runResults, o options) {
	fmt.Fprintf(w, "\n== tether run, proxy mode: a static Go client (tether-demo) under `tether run`; medians of %d interleaved rounds\n", o.rounds)
	print(w, r.baseline, []row{r.baseline, r.viaRun})
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "`tether run deploy/orders -- true`, agent in place, daemon running\t%s\t\n", r.runTrue.Round(time.Millisecond))
	tw.Flush()
}
