package intercept

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// timeline times the steps of an intercept's start (the whole start's and
// each pod's), so that the daemon's log says where the time went: one
// line when the start ends, read by `tether logs` and the bench's
// breakdown (integration/bench, -only modes).
type timeline struct {
	start time.Time
	mu    sync.Mutex
	spans []Span
	last  time.Duration // where the last mark ended
}

// Span is one step of a start: Pod is empty for a step of the whole
// start. From and To are milliseconds since the start began.
type Span struct {
	Step string  `json:"step"`
	Pod  string  `json:"pod,omitempty"`
	From float64 `json:"from"`
	To   float64 `json:"to"`
}

func newTimeline() *timeline { return &timeline{start: time.Now()} }

// begin starts a step; the function it returns ends it. A nil timeline
// times nothing (a pod the follower joins later).
func (t *timeline) begin(step, pod string) func() {
	if t == nil {
		return func() {}
	}
	from := time.Since(t.start)
	return func() { t.add(step, pod, from, time.Since(t.start)) }
}

// between records a step that began at from and ended at to.
func (t *timeline) between(step, pod string, from, to time.Time) {
	if t == nil {
		return
	}
	t.add(step, pod, from.Sub(t.start), to.Sub(t.start))
}

// mark ends a step that began where the last mark ended (or at the
// start): for a start whose steps run one after another.
func (t *timeline) mark(step string) {
	if t == nil {
		return
	}
	now := time.Since(t.start)
	t.mu.Lock()
	from := t.last
	t.last = now
	t.mu.Unlock()
	t.add(step, "", from, now)
}

// log writes the whole start as one "intercept timeline" line.
func (t *timeline) log(log *slog.Logger, workload string) {
	if t == nil || log == nil {
		return
	}
	log.Info("intercept timeline", "workload", workload, "took", time.Since(t.start), "steps", t.String(), "timeline", t.Spans())
}

func (t *timeline) add(step, pod string, from, to time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.spans = append(t.spans, Span{Step: step, Pod: pod, From: ms(from), To: ms(to)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Spans returns the steps in the order they began.
func (t *timeline) Spans() []Span {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.spans)
	slices.SortStableFunc(out, func(a, b Span) int {
		switch {
		case a.From < b.From:
			return -1
		case a.From > b.From:
			return 1
		}
		return 0
	})
	return out
}

// String is the steps for people: "plan 0-41ms, pod-a ensure 41-70ms, ...".
func (t *timeline) String() string {
	var b strings.Builder
	for i, s := range t.Spans() {
		if i > 0 {
			b.WriteString(", ")
		}
		if s.Pod != "" {
			b.WriteString(s.Pod + " ")
		}
		fmt.Fprintf(&b, "%s %.0f-%.0fms", s.Step, s.From, s.To)
	}
	return b.String()
}
