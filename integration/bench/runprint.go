package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func printRun(w io.Writer, r runResults, o options) {
	fmt.Fprintf(w, "\n== tether run, proxy mode: runclient (a static Go binary) under `tether run deploy/orders`, Service by name,\n"+
		"   over each path (--path), against the raw client-go port-forward to the same pod; medians of %d interleaved rounds\n", o.rounds)
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
		fmt.Fprintf(w, "\nprofiles (CPU, block, mutex, heap of the daemon, of `tether run` and of the agent, agent-POD.*, one folder per row and mode): %s\n", r.profiles)
	}
}

func printRunRows(w io.Writer, rows []runRow, targets bool) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	head := "what\tbaseline\t"
	for _, p := range tunnelPaths {
		head += p + "\tratio\t"
	}
	head += "errors (baseline / " + strings.Join(tunnelPaths, " / ") + ")\t"
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
		errs := fmt.Sprintf("%d of %d", row.base.Errors, row.base.N)
		p50, p99, mibs := "", "", ""
		for _, run := range row.run {
			errs += fmt.Sprintf(" / %d of %d", run.Errors, run.N)
			p50 += fmt.Sprintf("%s\t%.2fx\t", run.P50.Round(time.Microsecond), float64(run.P50)/float64(row.base.P50))
			p99 += fmt.Sprintf("%s\t%.2fx\t", run.P99.Round(time.Microsecond), float64(run.P99)/float64(row.base.P99))
			mibs += fmt.Sprintf("%.1f\t%.2fx\t", run.MiBps, run.MiBps/row.base.MiBps)
		}
		if row.latency {
			fmt.Fprintf(tw, "%s, p50\t%s\t%s%s\t%s\n", row.name, row.base.P50.Round(time.Microsecond), p50, errs, target(row.name+", p50"))
			fmt.Fprintf(tw, "%s, p99\t%s\t%s\t%s\n", row.name, row.base.P99.Round(time.Microsecond), p99, target(""))
		} else {
			fmt.Fprintf(tw, "%s, MiB/s\t%.1f\t%s\t%s\n", row.name, row.base.MiBps, mibs, target("MiB/s"))
		}
	}
	tw.Flush()
	for _, row := range rows {
		for p, run := range row.run {
			if run.Errors > 0 {
				fmt.Fprintf(w, "%s over %s: first error under tether run: %s\n", row.name, tunnelPaths[p], run.First)
			}
		}
	}
	fmt.Fprintln(w, "latency ratio < 1 and throughput ratio > 1 are faster than the baseline")
}
