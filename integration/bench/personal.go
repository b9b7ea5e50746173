package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tetherkube/tether/integration/demoapp"
)

// The personal-intercept rows (issue 12) measure the agent's router on
// this machine: the real agent binary in front of the demo app on
// loopback, a tunnel opened by this process as the daemon opens it, and
// requests at a fixed rate. The cluster adds the same hops to every row.

// benchAgent is one tether-agent process in front of the app; the
// laptop's end (laptopend.go) connects to its tunnel.
type benchAgent struct {
	cmd    *exec.Cmd
	limit  *cpuLimit // nil: no CPU limit
	front  string    // http://127.0.0.1:PORT
	port   int
	tunnel string
	token  string
}

func startBenchAgent(ctx context.Context, bin string, appPort int) (*benchAgent, error) {
	free := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	tport, err := free()
	if err != nil {
		return nil, err
	}
	fport, err := free()
	if err != nil {
		return nil, err
	}
	token := "bench-token-0123456789abcdef"
	cmd := exec.CommandContext(ctx, bin, "--tunnel", "127.0.0.1:"+strconv.Itoa(tport), "--token-env", "TOKEN",
		"--forward", fmt.Sprintf("%d:%d", fport, appPort))
	cmd.Env = append(os.Environ(), "TOKEN="+token)
	// The agent's log, for a run that fails: $TMPDIR/tether-bench-agent-PORT.log.
	if f, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("tether-bench-agent-%d.log", fport))); err == nil {
		cmd.Stderr = f
		defer f.Close()
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &benchAgent{cmd: cmd, front: fmt.Sprintf("http://127.0.0.1:%d", fport), port: fport,
		tunnel: "127.0.0.1:" + strconv.Itoa(tport), token: token}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", a.tunnel)
		if err == nil {
			c.Close() // the agent takes the next connection as its daemon's
			return a, nil
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("agent not listening: %w", err)
		}
	}
}

func (a *benchAgent) stop() {
	a.cmd.Process.Kill()
	a.cmd.Wait()
	if a.limit != nil {
		a.limit.remove()
	}
}

// personalResults are the personal-intercept figures.
type personalResults struct {
	direct, plain, routed          row // 1,000 requests/s
	global, filtered               row // sequential keep-alive, to the laptop
	mirPlain, mirRouted, mirror    row // mirrorRate requests/s
	mirrorRate                     int
	laptopSched                    string
	copies, dropped, shed          uint64
	cpuPlain, cpuRouted, cpuMirror float64 // agent CPU seconds per second at the row's rate
	// cpuRoutedFast is the router's at the mirror row's rate, cpuLaptop the
	// laptop end's (server and tunnels) during the mirror row.
	cpuRoutedFast, cpuLaptop       float64
	rssPlain, rssRouted, rssMirror int64
	// agentCPU is the agents' CPU limit (0: none); throttled the periods
	// (and seconds) each agent found its quota spent, by agent.
	agentCPU  float64
	throttled map[string]throttling
	// failed counts failed requests in all rows; mirrorSent the requests
	// sent through the mirroring agent.
	failed, mirrorSent int
}

// measurePersonal runs the personal-intercept rows, interleaved, medians
// of o.rounds.
func measurePersonal(ctx context.Context, o options) (personalResults, error) {
	r := personalResults{mirrorRate: o.mirrorRate, laptopSched: o.laptopSched, agentCPU: o.agentCPU, throttled: map[string]throttling{}}
	agentBin := strings.TrimSuffix(o.tetherBin, "tether") + "tether-agent"
	appL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	app := &http.Server{Handler: demoapp.NewServer("app").Handler()}
	go app.Serve(appL)
	defer app.Close()
	appPort := appL.Addr().(*net.TCPAddr).Port

	agents := map[string]*benchAgent{}
	for _, name := range []string{"plain", "routed", "global", "mirror"} {
		a, err := startBenchAgent(ctx, agentBin, appPort)
		if err != nil {
			return r, fmt.Errorf("agent %s: %w", name, err)
		}
		defer a.stop()
		agents[name] = a
		if o.agentCPU > 0 {
			// As the kubelet holds the agent container to its limit.
			if a.limit, err = limitCPU(a.cmd.Process.Pid, o.agentCPU); err != nil {
				return r, fmt.Errorf("agent %s: -agent-cpu %g: %w (it needs root; -agent-cpu 0 runs the agents with no limit)", name, o.agentCPU, err)
			}
		}
	}
	if o.pinAgents {
		// The agents on the last CPU, this process (load and app) on the
		// others: as in a cluster, where the callers and the app's other
		// work do not take the agent's CPU.
		if err := pinAgents(agents); err != nil {
			return r, err
		}
	}
	intercepts := map[string]*laptopIntercept{
		"routed": {ID: "ana", Headers: []string{"x-tether-user=ana"}},
		"global": {ID: "all"},
		"mirror": {ID: "copy", Mirror: true},
	}
	spec := laptopSpec{Counts: "mirror"}
	for _, name := range []string{"plain", "routed", "global", "mirror"} {
		a := agents[name]
		spec.Agents = append(spec.Agents, laptopAgent{Name: name, Tunnel: a.tunnel, Token: a.token, Port: a.port, Intercept: intercepts[name]})
	}
	// With -profile-dir (make bench PROFILE=1) the mirroring agent, the
	// one that does two requests per request, is profiled for the whole
	// run: agent-mirror.{cpu,block,mutex,heap}.pprof.
	profDir := o.profileDir
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			return r, err
		}
		spec.Profile = "mirror"
	}
	lap, err := startLaptopEnd(ctx, spec, o.laptopSched)
	if err != nil {
		return r, err
	}
	defer lap.kill()
	const window = 3 * time.Second
	path := "/orders/7"
	var direct, plain, routed, global, filtered, mirPlain, mirRouted, mirror []row
	var cpuPlain, cpuRouted, cpuMirror, cpuRoutedFast, cpuLaptop []float64
	lapPid := lap.cmd.Process.Pid
	for range o.rounds {
		for _, m := range []struct {
			url  string
			rate int
			into *[]row
			pid  int
			cpu  *[]float64
			lap  *[]float64 // the laptop end's CPU, when wanted
		}{
			{"http://" + appL.Addr().String() + path, 1000, &direct, 0, nil, nil},
			{agents["plain"].front + path, 1000, &plain, agents["plain"].cmd.Process.Pid, &cpuPlain, nil},
			{agents["routed"].front + path, 1000, &routed, agents["routed"].cmd.Process.Pid, &cpuRouted, nil},
			{agents["plain"].front + path, r.mirrorRate, &mirPlain, 0, nil, nil},
			{agents["routed"].front + path, r.mirrorRate, &mirRouted, agents["routed"].cmd.Process.Pid, &cpuRoutedFast, nil},
			{agents["mirror"].front + path, r.mirrorRate, &mirror, agents["mirror"].cmd.Process.Pid, &cpuMirror, &cpuLaptop},
		} {
			c0, l0 := cpuSeconds(m.pid), cpuSeconds(lapPid)
			row, failed := pacedCounting(ctx, m.url, m.rate, window)
			r.failed += failed
			perThousand := func(sec float64) float64 { return sec / window.Seconds() * 1000 / float64(m.rate) }
			if m.cpu != nil {
				*m.cpu = append(*m.cpu, perThousand(cpuSeconds(m.pid)-c0))
			}
			if m.lap != nil {
				*m.lap = append(*m.lap, perThousand(cpuSeconds(lapPid)-l0))
			}
			*m.into = append(*m.into, row)
		}
		g, err := keepAliveLatency(ctx, agents["global"].front+path, o.requests, "")
		if err != nil {
			return r, err
		}
		f, err := keepAliveLatency(ctx, agents["routed"].front+path, o.requests, "ana")
		if err != nil {
			return r, err
		}
		global, filtered = append(global, g), append(filtered, f)
	}
	r.direct = median("app directly (baseline)", direct)
	r.plain = median("through the agent, nobody intercepting", plain)
	r.routed = median("through the agent's router, a filter that matches none", routed)
	r.global = median("intercept of all traffic (today's), to the laptop", global)
	r.filtered = median("filtered intercept, matching requests, to the laptop", filtered)
	r.mirPlain = median("through the agent, nobody intercepting", mirPlain)
	r.mirRouted = median("through the agent's router, no mirror", mirRouted)
	r.mirror = median("with a mirror of every request", mirror)
	for _, x := range mirror {
		r.mirrorSent += x.requests
	}
	r.cpuPlain, r.cpuRouted, r.cpuMirror = medianFloat(cpuPlain), medianFloat(cpuRouted), medianFloat(cpuMirror)
	r.cpuRoutedFast, r.cpuLaptop = medianFloat(cpuRoutedFast), medianFloat(cpuLaptop)
	for name, a := range agents {
		if a.limit != nil {
			r.throttled[name] = a.limit.throttled()
		}
	}
	r.rssPlain, r.rssRouted, r.rssMirror = rss(agents["plain"].cmd.Process.Pid), rss(agents["routed"].cmd.Process.Pid), rss(agents["mirror"].cmd.Process.Pid)
	res, err := lap.finish()
	if err != nil {
		return r, err
	}
	for kind, b := range res.Profile {
		if err := os.WriteFile(filepath.Join(profDir, "agent-mirror."+kind+".pprof"), b, 0o600); err != nil {
			return r, err
		}
	}
	r.copies, r.dropped, r.shed = res.Copies, res.Dropped, res.Shed
	return r, nil
}

// throttling is how often an agent's CPU quota ran out.
type throttling struct {
	periods int64
	seconds float64
}

// keepAliveLatency sends n sequential GETs on one connection, as user
// (x-tether-user) when not "".
func keepAliveLatency(ctx context.Context, url string, n int, user string) (row, error) {
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, 0, n)
	for range n {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if user != "" {
			req.Header.Set("X-Tether-User", user)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return row{}, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return row{p50: lat[n/2], p99: lat[n*99/100], requests: n}, nil
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// pacedCounting sends GETs at rate per second for d on keep-alive
// connections, as paced does, counting failures instead of stopping.
func pacedCounting(ctx context.Context, url string, rate int, d time.Duration) (row, int) {
	// At most 512 connections: a stall of the machine must not turn into
	// thousands of new connections (and the agent's work to accept them).
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			resp, err := client.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
			}
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return row{p50: lat[n/2], p99: lat[n*99/100], requests: n}, int(failed.Load())
}

func printPersonal(w io.Writer, r personalResults) {
	fmt.Fprintf(w, "\n== personal and mirror intercepts: the agent binary on this machine, medians of interleaved rounds; the laptop's end a process of its own, scheduled %s\n", r.laptopSched)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path at 1,000 requests/s\tp50\tp99\tp50 ratio to the agent\tp99 ratio to the agent\tp50 ratio to the app\t")
	for _, x := range []row{r.direct, r.plain, r.routed} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t%.2fx\t%.2fx\t\n", x.name, x.p50.Round(time.Microsecond), x.p99.Round(time.Microsecond),
			ratio(x.p50, r.plain.p50), ratio(x.p99, r.plain.p99), ratio(x.p50, r.direct.p50))
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "to the laptop, sequential keep-alive requests\tp50\tp99\tratio to all traffic\t")
	for _, x := range []row{r.global, r.filtered} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t\n", x.name, x.p50.Round(time.Microsecond), x.p99.Round(time.Microsecond), ratio(x.p50, r.global.p50))
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "the app's callers at %d requests/s\tp50\tp99\tp50 ratio to no mirror (router)\tto the agent\t\n", r.mirrorRate)
	for _, x := range []row{r.mirPlain, r.mirRouted, r.mirror} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t%.2fx\t\n", x.name, x.p50.Round(time.Microsecond), x.p99.Round(time.Microsecond),
			ratio(x.p50, r.mirRouted.p50), ratio(x.p50, r.mirPlain.p50))
	}
	tw.Flush()
	fmt.Fprintf(w, "failed requests in all these rows: %d; mirror copies delivered %d, dropped %d (%d of them near the agent's CPU limit; of %d requests through the mirroring agent)\n",
		r.failed, r.copies, r.dropped, r.shed, r.mirrorSent)
	fmt.Fprintf(w, "agent CPU per 1,000 requests/s: nobody intercepting %.0f ms/s, router %.0f ms/s (at 1,000/s), %.0f ms/s (at %d/s), mirror %.0f ms/s; RSS after: %.1f / %.1f / %.1f MiB\n",
		r.cpuPlain*1000, r.cpuRouted*1000, r.cpuRoutedFast*1000, r.mirrorRate, r.cpuMirror*1000, mib(r.rssPlain), mib(r.rssRouted), mib(r.rssMirror))
	if r.agentCPU > 0 {
		fmt.Fprintf(w, "each agent held to %g CPU (a CFS quota, as the kubelet holds the agent's container); periods its quota ran out (seconds throttled):", r.agentCPU)
		for _, name := range []string{"plain", "routed", "global", "mirror"} {
			t := r.throttled[name]
			fmt.Fprintf(w, " %s %d (%.2f s)", name, t.periods, t.seconds)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "the agents ran with no CPU limit (-agent-cpu 0)")
	}
	fmt.Fprintf(w, "the laptop end's CPU (its server answering the copies, the daemon's end of the tunnel) per 1,000 mirrored requests/s: %.0f ms/s\n", r.cpuLaptop*1000)
}
