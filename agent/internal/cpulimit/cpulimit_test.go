package cpulimit

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// tree writes files (path -> content) under a new root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestQuota(t *testing.T) {
	const v1Self = "12:pids:/kubepods/pod1/c1\n4:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/kubepods/pod1/c1\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		self  string
		want  float64
		ok    bool
	}{
		{"v1 in a container: its own cgroup at the mount's root", map[string]string{
			"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, v1Self, 0.5, true},
		{"v1 on a host: the process's cgroup by its path", map[string]string{
			"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
			"cpu/bench/cpu.cfs_quota_us": "200000\n", "cpu/bench/cpu.cfs_period_us": "100000\n"}, "3:cpu:/bench\n", 2, true},
		{"v1 without a limit", map[string]string{
			"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, v1Self, 0, false},
		{"v2 in a container", map[string]string{"cpu.max": "150000 100000\n"}, "0::/\n", 1.5, true},
		{"v2 on a host", map[string]string{"cpu.max": "max 100000\n", "x/y/cpu.max": "25000 50000\n"}, "0::/x/y\n", 0.5, true},
		{"v2 without a limit", map[string]string{"cpu.max": "max 100000\n"}, "0::/\n", 0, false},
		{"v2 unreadable", map[string]string{"cpu.max": "lots\n"}, "0::/\n", 0, false},
		{"no cgroup files", map[string]string{}, v1Self, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Quota(tree(t, tc.files), tc.self)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Quota = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestWatch: pressed from an interval that used more than High of the
// limit until Hold after the last such interval.
func TestWatch(t *testing.T) {
	limit, ok := 0.5, true
	w := NewWatch(Config{Limit: func() (float64, bool) { return limit, ok }, ReadEvery: 2 * time.Second,
		Interval: 100 * time.Millisecond, High: 0.7, Hold: time.Second})
	t0 := time.Unix(1000, 0)
	used := time.Duration(0)
	step := func(ms int, cpu time.Duration) bool {
		used += cpu
		t0 = t0.Add(time.Duration(ms) * time.Millisecond)
		w.observe(t0, used)
		return w.Pressed()
	}
	for i, s := range []struct {
		ms   int
		cpu  time.Duration
		want bool
	}{
		{0, 0, false},                       // the first look only sets the base
		{100, 30 * time.Millisecond, false}, // 60% of 0.5 cores
		{100, 36 * time.Millisecond, true},  // 72%
		{100, 0, true},                      // held
		{800, 0, true},                      // 0.9 s after
		{100, 0, false},                     // 1 s after: let go
		{200, 80 * time.Millisecond, true},  // 80% over a late look
	} {
		if got := step(s.ms, s.cpu); got != s.want {
			t.Fatalf("step %d: Pressed = %v, want %v", i, got, s.want)
		}
	}
	// The limit is read again every ReadEvery: raised (a pod resized in
	// place), the same use no longer presses; removed, nothing does.
	limit = 2
	step(2000, 0)
	if w.Cores() != 2 {
		t.Fatalf("limit read again: %v cores, want 2", w.Cores())
	}
	if step(100, 80*time.Millisecond) {
		t.Error("80 ms of 100 pressed a limit of 2 cores")
	}
	ok = false
	step(2000, 0)
	if w.Cores() != 0 || step(100, 100*time.Millisecond) {
		t.Errorf("no limit: %v cores, pressed %v; want 0, false", w.Cores(), w.Pressed())
	}
}

// TestWatchLooksOnlyWhileAsked: the watch starts looking at the first
// Pressed, stops once nobody asked for IdleAfter (pressed no more), starts
// again when asked, and never after its context ended.
func TestWatchLooksOnlyWhileAsked(t *testing.T) {
	var used atomic.Int64
	w := NewWatch(Config{Limit: func() (float64, bool) { return 1, true }, Interval: 5 * time.Millisecond,
		IdleAfter: 50 * time.Millisecond, Hold: time.Hour,
		Used: func() time.Duration { return time.Duration(used.Add(int64(10 * time.Millisecond))) }}) // 2 cores' worth
	if w.Pressed() {
		t.Fatal("pressed before Start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.Start(ctx)
	until(t, "pressed while asked", func() bool { return w.Pressed() })
	until(t, "stopped looking once nobody asked", func() bool { return !w.looking.Load() })
	if w.pressed.Load() {
		t.Error("still pressed after it stopped looking")
	}
	until(t, "pressed when asked again", func() bool { return w.Pressed() })
	cancel()
	until(t, "stopped looking once its context ended", func() bool { return !w.looking.Load() })
	for range 5 {
		if w.Pressed() {
			t.Fatal("pressed after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 5 s", what)
		}
	}
}
