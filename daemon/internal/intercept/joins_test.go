package intercept

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/httpfilter"
)

// TestGather: the first batch is the first result and those within the
// window of it; the rest come with the next gather; an error ends it.
func TestGather(t *testing.T) {
	results := func(n int) *joins { return &joins{results: make(chan joinResult, n), n: n} }
	send := func(j *joins, pod string, err error) {
		j.results <- joinResult{pod: readyPod(pod, nil), err: err}
	}
	names := func(rs []joinResult) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.pod.Name)
		}
		return out
	}
	ctx := context.Background()

	// Two answer together, the third a "kubelet turn" later.
	j := results(3)
	send(j, "orders-1", nil)
	send(j, "orders-2", nil)
	late := make(chan struct{})
	go func() { <-late; send(j, "orders-3", nil) }()
	first, err := j.gather(ctx, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"orders-1", "orders-2"}, names(first)); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}
	close(late)
	rest, err := j.gather(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"orders-3"}, names(rest)); diff != "" {
		t.Errorf("the rest (-want +got):\n%s", diff)
	}

	// Without a window: all of them.
	j = results(2)
	send(j, "orders-1", nil)
	go func() { time.Sleep(100 * time.Millisecond); send(j, "orders-2", nil) }()
	if all, err := j.gather(ctx, -1); err != nil || len(all) != 2 {
		t.Errorf("gather(-1) = %v, %v; want both", names(all), err)
	}

	// An error ends the gather; drain waits for the others.
	j = results(3)
	boom := errors.New("agent exited: address already in use")
	send(j, "orders-1", boom)
	if _, err := j.gather(ctx, time.Second); !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
	send(j, "orders-2", nil)
	send(j, "orders-3", nil)
	j.drain()
	if j.received != 3 {
		t.Errorf("drain received %d of 3", j.received)
	}
}

// TestFirstPods: only an intercept that sends all of a port's traffic to
// this machine starts with the first pods.
func TestFirstPods(t *testing.T) {
	filter := httpfilter.Spec{Headers: []string{"x-tether-user=ana"}}
	for _, tc := range []struct {
		name string
		req  Request
		want time.Duration
	}{
		{"all of the port's traffic", Request{}, FirstPods},
		{"recording", Request{RecordOnly: true}, -1},
		{"a filter", Request{Filter: filter}, -1},
		{"a mirror", Request{Mirror: true}, -1},
	} {
		if got := firstPods(tc.req); got != tc.want {
			t.Errorf("%s: firstPods = %v, want %v", tc.name, got, tc.want)
		}
	}
}
