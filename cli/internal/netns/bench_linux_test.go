package netns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The benchmarks compare CMD's traffic through the namespace (TUN,
// gVisor's stack, Dial to a local echo server) with the same probe against
// the same server directly, and print the ratios:
//
//	go test -run '^$' -bench . -benchtime 1x ./cli/internal/netns/
//
// They run as the calling user (root included: a user namespace needs no
// privilege either way).

var metric = regexp.MustCompile(`(\w+)=([0-9.]+)`)

// probeMetrics reads the probe's "KEY=VALUE" figures, as KEY and as
// STEP_KEY (the step's operation, e.g. httpbench_p50).
func probeMetrics(b *testing.B, out string) map[string]float64 {
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		op, _, _ := strings.Cut(line, ":")
		for _, kv := range metric.FindAllStringSubmatch(line, -1) {
			v, _ := strconv.ParseFloat(kv[2], 64)
			m[kv[1]] = v
			m[op+"_"+strings.TrimSuffix(kv[1], "_ns")] = v
		}
	}
	return m
}

func benchProbe(b *testing.B) string {
	if p := os.Getenv(probeEnv); p != "" {
		return p
	}
	return buildProbe(b, b.TempDir())
}

// direct runs the probe on the machine; inNS runs it under Run.
func direct(b *testing.B, probe string, steps ...string) map[string]float64 {
	out, err := exec.Command(probe, steps...).CombinedOutput()
	if err != nil {
		b.Fatalf("probe %v: %v: %s", steps, err, out)
	}
	return probeMetrics(b, string(out))
}

func inNS(b *testing.B, fc *fakeCluster, probe string, steps ...string) map[string]float64 {
	return inNSConfig(b, Config{Argv: append([]string{probe}, steps...), Env: []string{"PATH=/usr/bin:/bin"}, Dial: fc.Dial,
		Cluster: clusterPrefixes, ResolvConf: []byte(podResolvConf)})
}

func inNSConfig(b *testing.B, cfg Config) map[string]float64 {
	steps := cfg.Argv[1:]
	_, rc := startRun(b, cfg)
	r := waitResult(b, rc)
	if r.err != nil || r.status != 0 {
		b.Fatalf("Run %v: %d, %v: %s", steps, r.status, r.err, r.out)
	}
	b.Logf("CMD printed:\n%s", r.out)
	return probeMetrics(b, r.out)
}

// BenchmarkKeepAlive: 2,000 64-byte request/responses on one connection,
// then 100 MB each way.
func BenchmarkKeepAlive(b *testing.B) {
	probe := benchProbe(b)
	fc := newFakeCluster(b)
	for b.Loop() {
		d := direct(b, probe, "bench:"+fc.routes[svcAddr]+":2000:104857600")
		n := inNS(b, fc, probe, "bench:"+svcAddr+":2000:104857600")
		b.ReportMetric(n["p50_ns"]/1e3, "ns-p50-µs")
		b.ReportMetric(d["p50_ns"]/1e3, "direct-p50-µs")
		b.ReportMetric(n["p50_ns"]/d["p50_ns"], "latency-ratio")
		b.ReportMetric(n["mbps"], "ns-MB/s")
		b.ReportMetric(d["mbps"], "direct-MB/s")
		b.ReportMetric(n["mbps"]/d["mbps"], "throughput-ratio")
	}
}

// BenchmarkBulk: 100 MB upload, then 100 MB download, each on its own
// connection, through the namespace and directly. cpu-ms is the test
// process's CPU (user+system) during the transfer: directly, only the
// bulk server's; through the namespace, also the stack and the copy to
// Dial's connection (what `tether run` spends). Run it a few times
// (-benchtime 5x, -count): the machine's other load moves MB/s a lot,
// cpu-ms much less.
func BenchmarkBulk(b *testing.B) {
	const size = 100 << 20
	probe := benchProbe(b)
	fc := newFakeCluster(b)
	bulkAddr := "10.222.0.9:80"
	fc.routes[bulkAddr] = bulkServer(b)
	for b.Loop() {
		for _, op := range []string{"up", "down"} {
			step := op + ":%s:" + strconv.Itoa(size)
			c0 := cpuTime()
			d := direct(b, probe, fmt.Sprintf(step, fc.routes[bulkAddr]))
			c1 := cpuTime()
			n := inNS(b, fc, probe, fmt.Sprintf(step, bulkAddr))
			c2 := cpuTime()
			b.ReportMetric(n["mbps"], op+"-ns-MB/s")
			b.ReportMetric(d["mbps"], op+"-direct-MB/s")
			b.ReportMetric(n["mbps"]/d["mbps"], op+"-ratio")
			b.ReportMetric(float64(c1-c0)/1e6, op+"-direct-cpu-ms")
			b.ReportMetric(float64(c2-c1)/1e6, op+"-ns-cpu-ms")
		}
	}
}

// cpuTime is the test process's user+system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// bulkServer serves the probe's up and down steps: "up N" is followed by N
// bytes and the end of the client's stream, answered with "N\n"; "down N"
// is answered with N bytes and the end of the stream.
func bulkServer(b *testing.B) string {
	l := listenLocal(b)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				var op string
				var n int64
				if _, err := fmt.Sscanf(line, "%s %d", &op, &n); err != nil {
					return
				}
				if op == "up" {
					got, _ := io.Copy(io.Discard, r)
					fmt.Fprintf(c, "%d\n", got)
					return
				}
				_, _ = io.Copy(c, io.LimitReader(zeroes{}, n))
			}()
		}
	}()
	return l.Addr().String()
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// BenchmarkNewConnection: 1,000 connections, one request/response each.
func BenchmarkNewConnection(b *testing.B) {
	probe := benchProbe(b)
	fc := newFakeCluster(b)
	for b.Loop() {
		d := direct(b, probe, "connbench:"+fc.routes[svcAddr]+":1000")
		n := inNS(b, fc, probe, "connbench:"+svcAddr+":1000")
		b.ReportMetric(n["p50_ns"]/1e3, "ns-p50-µs")
		b.ReportMetric(d["p50_ns"]/1e3, "direct-p50-µs")
		b.ReportMetric(n["p50_ns"]/d["p50_ns"], "latency-ratio")
		b.ReportMetric(n["errors"], "ns-errors")
	}
}

// BenchmarkLookup: 1,000 lookups of a Service's short name (search list
// expansion included) answered by the pod's nameserver through Dial.
func BenchmarkLookup(b *testing.B) {
	probe := benchProbe(b)
	fc := newFakeCluster(b)
	for b.Loop() {
		n := inNS(b, fc, probe, "dnsbench:svc1:1000")
		b.ReportMetric(n["p50_ns"]/1e3, "lookup-p50-µs")
	}
}

// BenchmarkRunTrue: Run of /bin/true, start to exit.
func BenchmarkRunTrue(b *testing.B) {
	fc := newFakeCluster(b)
	cfg := Config{Argv: []string{"/bin/true"}, Dial: fc.Dial, Cluster: clusterPrefixes, ResolvConf: []byte(podResolvConf)}
	for b.Loop() {
		if st, err := Run(context.Background(), cfg); err != nil || st != 0 {
			b.Fatalf("Run: %d, %v", st, err)
		}
	}
}

// BenchmarkIdleConnections: the memory Run's process holds for 1,000 idle
// connections of CMD to the cluster (heap and goroutine stacks; the
// cluster side only keeps the accepted sockets).
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	probe := benchProbe(b)
	fc := newFakeCluster(b)
	holdAddr := "10.222.0.8:80"
	fc.routes[holdAddr] = holdServer(b)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		cfg := Config{Argv: []string{probe, "hold:" + holdAddr + ":" + strconv.Itoa(n)}, Env: []string{"PATH=/usr/bin:/bin"},
			Dial: fc.Dial, Cluster: clusterPrefixes, ResolvConf: []byte(podResolvConf), Stdout: pw}
		done := make(chan error, 1)
		go func() { _, err := Run(ctx, cfg); pw.Close(); done <- err }()
		before := inUse()
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil || line != "holding 1000\n" {
			b.Fatalf("CMD printed %q, %v", line, err)
		}
		time.Sleep(200 * time.Millisecond) // the last handshakes' goroutines settle
		after := inUse()
		b.ReportMetric(float64(after-before)/n/1024, "KiB/idle-conn")
		b.ReportMetric(float64(after-before)/(1<<20), "MiB-for-1000")
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

func inUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// holdServer accepts and keeps connections, without a goroutine each.
func holdServer(b *testing.B) string {
	l := listenLocal(b)
	go func() {
		var held []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	return l.Addr().String()
}
