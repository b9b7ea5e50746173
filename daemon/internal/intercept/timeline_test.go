package intercept

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTimeline(t *testing.T) {
	tl := &timeline{start: time.Unix(100, 0)}
	at := func(ms int) time.Time { return tl.start.Add(time.Duration(ms) * time.Millisecond) }
	tl.between("agents", "", at(10), at(900))
	tl.between("wait-agent", "pod-b", at(30), at(800))
	tl.between("plan", "", at(0), at(10))
	tl.between("ensure", "pod-b", at(10), at(30))
	want := []Span{{Step: "plan", To: 10}, {Step: "agents", From: 10, To: 900}, {Step: "ensure", Pod: "pod-b", From: 10, To: 30},
		{Step: "wait-agent", Pod: "pod-b", From: 30, To: 800}}
	if diff := cmp.Diff(want, tl.Spans()); diff != "" {
		t.Errorf("spans in the order they began (-want +got):\n%s", diff)
	}
	if got, want := tl.String(), "plan 0-10ms, agents 10-900ms, pod-b ensure 10-30ms, pod-b wait-agent 30-800ms"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	// A pod joined after the start times nothing.
	var none *timeline
	none.begin("ensure", "pod-c")()
	none.between("dial", "pod-c", at(0), at(1))
	if none.Spans() != nil || none.String() != "" {
		t.Errorf("a nil timeline recorded %v", none.Spans())
	}
}
