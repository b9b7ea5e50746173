// Package cpulimit watches how close the agent runs to its container's CPU
// limit, so that work which can give way (a mirror's copies) does so
// before the kernel throttles the container: a throttled agent stalls
// every caller of the app that passes through it until the next CFS
// period, up to 100 ms.
package cpulimit

import (
	"bufio"
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Quota reads the CPU limit of the cgroup this process runs in, in cores,
// from the cgroup file system mounted at root (/sys/fs/cgroup) and the
// process's membership (the text of /proc/self/cgroup); ok is false when
// the cgroup has no limit or none can be read. Inside a container the
// cgroup file system shows the container's own cgroup at its root; on a
// host, the process's cgroup is found by its path.
func Quota(root, selfCgroup string) (cores float64, ok bool) {
	v2Path, v1Path := "", ""
	sc := bufio.NewScanner(strings.NewReader(selfCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path = parts[2]
		case hasController(parts[1], "cpu"):
			v1Path = parts[2]
		}
	}
	for _, dir := range candidates(root, v1Path, "cpu", "cpu,cpuacct", "cpuacct,cpu") {
		q, errQ := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
		p, errP := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
		if errQ == nil && errP == nil {
			if q <= 0 || p <= 0 {
				return 0, false // -1: no limit
			}
			return float64(q) / float64(p), true
		}
	}
	for _, dir := range candidates(root, v2Path, "") {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) != 2 || f[0] == "max" {
			return 0, false
		}
		q, errQ := strconv.ParseInt(f[0], 10, 64)
		p, errP := strconv.ParseInt(f[1], 10, 64)
		if errQ != nil || errP != nil || q <= 0 || p <= 0 {
			return 0, false
		}
		return float64(q) / float64(p), true
	}
	return 0, false
}

// candidates are the folders that may hold the cgroup's files, the
// process's own path first, under each mount name.
func candidates(root, path string, mounts ...string) []string {
	var dirs []string
	for _, m := range mounts {
		base := filepath.Join(root, m)
		if path != "" && path != "/" {
			dirs = append(dirs, filepath.Join(base, path))
		}
		dirs = append(dirs, base)
	}
	return dirs
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Config sets a Watch.
type Config struct {
	// Limit reads the limit, in cores (Quota); ok false when there is
	// none. It is read again every ReadEvery: a pod's limits can change
	// while it runs (in-place resize).
	Limit     func() (cores float64, ok bool)
	ReadEvery time.Duration
	// Interval is how often the process's CPU time is read (default
	// 100 ms, the CFS period).
	Interval time.Duration
	// High is the share of the limit used in one interval above which the
	// watch says the process is pressed (default 0.7).
	High float64
	// Hold is how long it stays pressed after the last interval above
	// High (default 1 s): giving way in short bursts would let the load
	// come back at once.
	Hold time.Duration
	// Used returns the CPU time the process has used (default: the
	// process's user + system time).
	Used func() time.Duration
	// IdleAfter: the watch stops looking when Pressed was not called for
	// this long (default 10 s).
	IdleAfter time.Duration
}

// Watch says whether the process runs close to its CPU limit.
type Watch struct {
	cfg     Config
	ctx     atomic.Pointer[context.Context]
	cores   atomic.Uint64 // float64 bits
	pressed atomic.Bool
	asked   atomic.Bool // Pressed was called since the last look
	looking atomic.Bool // look runs
	// The looking goroutine's own.
	readAt    time.Time
	last      time.Duration
	lastAt    time.Time
	pressedTo time.Time
}

// NewWatch returns a watch of cfg's limit; Start lets it look.
func NewWatch(cfg Config) *Watch {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.High <= 0 {
		cfg.High = 0.7
	}
	if cfg.Hold <= 0 {
		cfg.Hold = time.Second
	}
	if cfg.Used == nil {
		cfg.Used = processCPU
	}
	if cfg.ReadEvery <= 0 {
		cfg.ReadEvery = 5 * time.Second
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 10 * time.Second
	}
	return &Watch{cfg: cfg}
}

// Cores is the limit last read; 0 when there is none.
func (w *Watch) Cores() float64 { return math.Float64frombits(w.cores.Load()) }

func (w *Watch) readLimit(now time.Time) {
	cores, ok := w.cfg.Limit()
	if !ok {
		cores = 0
	}
	w.cores.Store(math.Float64bits(cores))
	w.readAt = now
}

// Pressed reports whether the process used more than High of its limit
// within the last Hold. The watch looks only while someone asks: the
// first call after Start, or after IdleAfter without one, starts it
// looking (that call answers false), so an agent nobody mirrors through
// never wakes for it.
func (w *Watch) Pressed() bool {
	w.asked.Store(true)
	if !w.looking.Load() && w.looking.CompareAndSwap(false, true) {
		if ctx := w.ctx.Load(); ctx != nil && (*ctx).Err() == nil {
			go w.look(*ctx)
		} else {
			w.looking.Store(false)
		}
	}
	return w.pressed.Load()
}

// Start lets Pressed start looking, until ctx ends.
func (w *Watch) Start(ctx context.Context) { w.ctx.Store(&ctx) }

// look reads the process's CPU time every Interval until ctx ends or
// nobody asked for IdleAfter.
func (w *Watch) look(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	w.lastAt = time.Time{} // the first look sets the base
	w.observe(time.Now(), w.cfg.Used())
	quietSince := time.Now()
	for {
		select {
		case <-ctx.Done():
		case now := <-t.C:
			if w.asked.Swap(false) {
				quietSince = now
			}
			if now.Sub(quietSince) < w.cfg.IdleAfter {
				w.observe(now, w.cfg.Used())
				continue
			}
		}
		w.pressed.Store(false)
		w.looking.Store(false)
		return
	}
}

// observe takes the process's CPU time used by now.
func (w *Watch) observe(now time.Time, used time.Duration) {
	if w.readAt.IsZero() || now.Sub(w.readAt) >= w.cfg.ReadEvery {
		w.readLimit(now)
	}
	cores := w.Cores()
	if cores > 0 && !w.lastAt.IsZero() {
		if elapsed := now.Sub(w.lastAt); elapsed > 0 {
			share := float64(used-w.last) / float64(elapsed) / cores
			if share > w.cfg.High {
				w.pressedTo = now.Add(w.cfg.Hold)
			}
		}
	}
	w.last, w.lastAt = used, now
	w.pressed.Store(now.Before(w.pressedTo))
}
