package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// startSteps is the daemon's timeline of one intercept's start (its log's
// "intercept --no-restart started" line): where the first intercept's
// time went.
type startSteps struct {
	// total is the first intercept as the CLI's caller saw it; took as the
	// daemon's start did (the rest: the CLI, the daemon's resolve and
	// access checks).
	total, took time.Duration
	spans       []stepSpan
	// text is the log's line of steps, for people.
	text string
}

// stepSpan is one step: Pod is empty for a step of the whole start; From
// and To are milliseconds since the start began.
type stepSpan struct {
	Step string  `json:"step"`
	Pod  string  `json:"pod"`
	From float64 `json:"from"`
	To   float64 `json:"to"`
}

// lastStartSteps reads the last start's timeline from the daemon's log.
func lastStartSteps(ctx context.Context, cli tetherCLI) (startSteps, bool) {
	out, err := cli.cmd(ctx, "logs", "--tail", "0", "-o", "json").Output()
	if err != nil {
		return startSteps{}, false
	}
	var lines []json.RawMessage
	if json.Unmarshal(out, &lines) != nil {
		return startSteps{}, false
	}
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct {
			Msg      string     `json:"msg"`
			Took     int64      `json:"took"`
			Steps    string     `json:"steps"`
			Timeline []stepSpan `json:"timeline"`
		}
		if json.Unmarshal(lines[i], &l) == nil && l.Msg == "intercept --no-restart started" {
			return startSteps{took: time.Duration(l.Took), spans: l.Timeline, text: l.Steps}, true
		}
	}
	return startSteps{}, false
}

// stepFigure is a step's duration and end in one start: for a step of
// each pod, the slowest pod's duration and the last pod's end.
type stepFigure struct{ took, end float64 }

func (s startSteps) figures() (order []string, by map[string]stepFigure) {
	by = map[string]stepFigure{}
	for _, sp := range s.spans {
		name := sp.Step
		if sp.Pod != "" {
			name = "  pod: " + sp.Step
		}
		f, ok := by[name]
		if !ok {
			order = append(order, name)
		}
		f.took = max(f.took, sp.To-sp.From)
		f.end = max(f.end, sp.To)
		by[name] = f
	}
	return order, by
}

// printSteps prints the median of each step over r's rounds.
func printSteps(w io.Writer, r modeResult) {
	fmt.Fprintf(w, "\n-- %s: first intercept's steps (daemon log), medians of %d rounds; a pod's step: its slowest pod\n", r.label, len(r.steps))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\ttook\tends at\t")
	var order []string
	took, end := map[string][]float64{}, map[string][]float64{}
	var outside, daemon []float64
	for _, st := range r.steps {
		o, by := st.figures()
		for _, name := range o {
			if !slices.Contains(order, name) {
				order = append(order, name)
			}
			took[name] = append(took[name], by[name].took)
			end[name] = append(end[name], by[name].end)
		}
		daemon = append(daemon, float64(st.took.Microseconds())/1000)
		outside = append(outside, float64((st.total-st.took).Microseconds())/1000)
	}
	for _, name := range order {
		fmt.Fprintf(tw, "%s\t%.0f ms\t%.0f ms\t\n", name, medianMs(took[name]), medianMs(end[name]))
	}
	fmt.Fprintf(tw, "the daemon's start\t%.0f ms\t\t\n", medianMs(daemon))
	fmt.Fprintf(tw, "outside it (CLI, resolve, access checks)\t%.0f ms\t\t\n", medianMs(outside))
	tw.Flush()
}

func medianMs(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
