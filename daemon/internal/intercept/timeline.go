package intercept

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// timeline records when each step of a start ended, for one log line
// ("intercept timeline"): where a first intercept's time goes after the
// rollout, and a re-intercept's.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	steps []string
}

func newTimeline() *timeline { return &timeline{start: time.Now()} }

// mark notes that step ended now.
func (t *timeline) mark(step string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.steps = append(t.steps, fmt.Sprintf("%s=%dms", step, time.Since(t.start).Milliseconds()))
}

// log writes the steps, each as the time since the start.
func (t *timeline) log(log *slog.Logger, workload string) {
	if t == nil || log == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	log.Info("intercept timeline", "workload", workload, "steps", strings.Join(t.steps, " "))
}
