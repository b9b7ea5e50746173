package httprec

import (
	"bytes"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// floodGET is one of the pipelined requests of a flood.
const floodGET = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// floodAnswer is the app's answer to each.
const floodAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

// runFlood sends 1 MiB of pipelined GETs through a recorded connection in
// reads of 32 KiB (io.Copy's buffer), the app answering each read's
// requests after it or, when silent, never. It returns the heap the
// recorder holds at the end (HeapInuse growth, the connection still open)
// and the CPU time spent; peak is the most it held after any read.
func runFlood(tb testing.TB, budget int, silent bool) (heapGrowth, peak int64, cpu time.Duration, ring *Ring) {
	flood := bytes.Repeat([]byte(floodGET), (1<<20)/len(floodGET))
	ring = NewRing(budget)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	c := ring.NewConn(Meta{Pod: "p", Source: "10.0.0.1:1234"}, DefaultOptions())
	for i, p := 0, flood; len(p) > 0; i++ {
		n := min(len(p), 32<<10)
		c.BeforeClientWrite()
		c.AfterClientWrite(p[:n])
		if !silent {
			c.FromServer(bytes.Repeat([]byte(floodAnswer), bytes.Count(p[:n], []byte("\r\n\r\n"))))
		}
		p = p[n:]
		if i%4 == 3 { // every 128 KiB, outside the CPU time
			cpu += cpuTime() - cpu0
			var now runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&now)
			peak = max(peak, int64(now.HeapInuse)-int64(before.HeapInuse))
			cpu0 = cpuTime()
		}
	}
	cpu += cpuTime() - cpu0
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	c.Close()
	heapGrowth = int64(after.HeapInuse) - int64(before.HeapInuse)
	return heapGrowth, max(peak, heapGrowth), cpu, ring
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPipelinedFlood measures what a flood of 1 MiB of pipelined GETs
// costs the recorder: heap held (MiB) and CPU time per flood, with a small
// and the default budget, against an app that answers and one that never
// does; heapMiB is held at the end of the flood (the connection open),
// peakMiB the most held after any 128 KiB. Run: go test -run XXX -bench PipelinedFlood ./agent/internal/httprec/
func BenchmarkPipelinedFlood(b *testing.B) {
	for _, bc := range []struct {
		name   string
		budget int
		silent bool
	}{
		{"budget=1MiB/app=answers", 1 << 20, false},
		{"budget=1MiB/app=silent", 1 << 20, true},
		{"budget=64MiB/app=answers", 64 << 20, false},
		{"budget=64MiB/app=silent", 64 << 20, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var heap, peak int64
			var cpu time.Duration
			var st Stats
			for b.Loop() {
				h, pk, c, ring := runFlood(b, bc.budget, bc.silent)
				heap, peak, cpu, st = max(heap, h), max(peak, pk), cpu+c, ring.Stats()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heapMiB")
			b.ReportMetric(float64(peak)/(1<<20), "peakMiB")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(st.Exchanges), "recorded")
		})
	}
}
