package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/integration/demoapp"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// recordResults are the recording and replay figures.
type recordResults struct {
	direct, off, on       row // latency at a fixed rate
	rate                  int
	replayPerSec, rawPS   float64
	replayed              int
	agentFull, appFull    memory
	fullHeld, fullEvicted uint64
}

// measureRecording measures what recording adds on the agent's data path:
// the demo app and two agents run here on loopback, one recording and one
// not (--no-record), and requests go at a fixed rate through each, in
// interleaved rounds; the app reached directly is the baseline.
func measureRecording(ctx context.Context, o options) (recordResults, error) {
	r := recordResults{rate: 1000}
	appL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	app := &http.Server{Handler: demoapp.NewServer("bench").Handler()}
	go app.Serve(appL)
	defer app.Close()
	appPort := appL.Addr().(*net.TCPAddr).Port
	startAgent := func(record bool) (int, error) {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		fl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		cfg := server.DefaultConfig()
		cfg.Token = []byte("0123456789abcdef0123456789abcdef")
		cfg.Forwards = []agent.Forward{{ListenPort: fl.Addr().(*net.TCPAddr).Port, AppPort: appPort}}
		cfg.Record.Off = !record
		a, err := server.New(cfg)
		if err != nil {
			return 0, err
		}
		go a.ServeListeners(ctx, tl, []net.Listener{fl})
		return fl.Addr().(*net.TCPAddr).Port, nil
	}
	offPort, err := startAgent(false)
	if err != nil {
		return r, err
	}
	onPort, err := startAgent(true)
	if err != nil {
		return r, err
	}
	var direct, off, on []row
	const window = 3 * time.Second
	for range o.rounds {
		for _, p := range []struct {
			port int
			into *[]row
		}{{appPort, &direct}, {offPort, &off}, {onPort, &on}} {
			m, err := paced(ctx, fmt.Sprintf("http://127.0.0.1:%d/orders/7", p.port), r.rate, window)
			if err != nil {
				return r, err
			}
			*p.into = append(*p.into, m)
		}
	}
	r.direct = median("app directly (baseline)", direct)
	r.off = median("through the agent, recording off", off)
	r.on = median("through the agent, recording on", on)

	// Replay throughput: the CLI replays a saved recording to the app here
	// through the daemon, against the rate a plain Go client reaches on the
	// same server with the same concurrency.
	file := filepath.Join(os.TempDir(), "tether-bench-replay.json")
	var exs []*recording.Exchange
	for i := range 500 {
		exs = append(exs, &recording.Exchange{ID: uint64(i + 1), Time: time.Now(), Proto: "HTTP/1.1",
			Request:  recording.Message{Method: "GET", Target: "/orders/7", Host: "orders", Header: http.Header{"User-Agent": {"bench"}}},
			Response: &recording.Message{Status: 200, Header: http.Header{}}})
	}
	f, err := os.Create(file)
	if err != nil {
		return r, err
	}
	recording.WriteJSONL(f, exs)
	f.Close()
	defer os.Remove(file)
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	const conc, count = 32, 40
	out, err := cli.run(ctx, "replay", "--from", file, "--to", "local:"+strconv.Itoa(appPort), "--concurrency", strconv.Itoa(conc),
		"--count", strconv.Itoa(count), "-o", "json")
	if err != nil {
		return r, fmt.Errorf("replay: %w", err)
	}
	var sum replay.Summary
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			return r, err
		}
		if _, ok := v["perSecond"]; ok {
			b, _ := json.Marshal(v)
			json.Unmarshal(b, &sum)
		}
	}
	r.replayPerSec, r.replayed = sum.PerSecond, sum.Sent
	r.rawPS, err = rawRate(ctx, fmt.Sprintf("http://127.0.0.1:%d/orders/7", appPort), conc, len(exs)*count)
	return r, err
}

// paced sends GETs at rate per second for d, on keep-alive connections,
// and returns the latency percentiles.
func paced(ctx context.Context, url string, rate int, d time.Duration) (row, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	start := time.Now()
	done := make(chan struct{}, n)
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
			time.Sleep(wait)
		}
		go func() {
			t0 := time.Now()
			resp, err := client.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			lat[i] = time.Since(t0)
			errs <- err
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
		if err := <-errs; err != nil {
			return row{}, err
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return row{p50: lat[n/2], p99: lat[n*99/100], requests: n}, ctx.Err()
}

// rawRate is how many GETs per second conc workers reach on url.
func rawRate(ctx context.Context, url string, conc, total int) (float64, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	start := time.Now()
	errs := make(chan error, conc)
	for range conc {
		go func() {
			for range jobs {
				resp, err := client.Get(url)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for range conc {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return float64(total) / time.Since(start).Seconds(), ctx.Err()
}

func printRecording(w io.Writer, r recordResults) {
	fmt.Fprintf(w, "\n== recording: %d requests/s for 3 s per path, medians of rounds (agent and app on loopback, this machine)\n", r.rate)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tp50\tp99\tp50 vs off\tp99 vs off\t")
	for _, x := range []row{r.direct, r.off, r.on} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fx\t%.2fx\t\n", x.name, x.p50.Round(time.Microsecond), x.p99.Round(time.Microsecond),
			ratio(x.p50, r.off.p50), ratio(x.p99, r.off.p99))
	}
	tw.Flush()
	fmt.Fprintf(w, "   target: recording adds at most 5%% to p50 (on/off p50 = %.2fx)\n", ratio(r.on.p50, r.off.p50))
	fmt.Fprintf(w, "\n== agent memory with a full recording buffer (64 MiB budget, 96 uploads of 1 MiB; %d held, %d evicted)\n", r.fullHeld, r.fullEvicted)
	fmt.Fprintf(w, "   agent working set %.1f MiB (RSS %.1f MiB); the orders app (baseline) %.1f MiB: %.1fx\n",
		mib(r.agentFull.workingSet), mib(r.agentFull.rss), mib(r.appFull.workingSet), float64(r.agentFull.workingSet)/float64(max(r.appFull.workingSet, 1)))
	fmt.Fprintf(w, "\n== replay to a local server (through the daemon, 32 concurrent, %d requests)\n", r.replayed)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\trequests/s\tratio\ttarget\t")
	fmt.Fprintf(tw, "plain Go client, same server and concurrency (baseline)\t%.0f\t1.00x\t\t\n", r.rawPS)
	fmt.Fprintf(tw, "tether replay --from FILE --to local:PORT\t%.0f\t%.2fx\t>= 5,000/s\t\n", r.replayPerSec, r.replayPerSec/r.rawPS)
	tw.Flush()
}

// measureFullBuffer records the orders app in the cluster with the default
// 64 MiB budget, floods it with 1 MiB uploads until the ring is full, and
// reads the agent's memory from the kubelet.
func measureFullBuffer(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options, client string, r *recordResults) error {
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	if out, err := cli.run(ctx, "record", "orders", "--port", "http"); err != nil {
		return fmt.Errorf("record: %w\n%s", err, out)
	}
	defer cli.run(context.Background(), "rollback", "orders")
	base := "http://orders." + o.namespace + ".svc.cluster.local"
	for range 96 { // 96 MiB of bodies into a 64 MiB budget
		if _, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "upload", base, strconv.Itoa(1<<20)); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
	}
	out, err := cli.run(ctx, "requests", "stats", "orders", "-o", "json")
	if err != nil {
		return err
	}
	var pods []struct {
		Stats struct{ Held, Evicted uint64 }
	}
	if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods) != 1 {
		return fmt.Errorf("requests stats: %v: %s", err, out)
	}
	r.fullHeld, r.fullEvicted = pods[0].Stats.Held, pods[0].Stats.Evicted
	time.Sleep(10 * time.Second) // the kubelet samples every few seconds
	r.agentFull, r.appFull, err = containerRSS(ctx, cs, o.namespace)
	return err
}
