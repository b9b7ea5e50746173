package intercept

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSerialProgress: lines reach the caller one at a time while the start
// runs, and the log once it has returned.
func TestSerialProgress(t *testing.T) {
	var got []string
	inReport := false
	report := func(line string) {
		if inReport {
			t.Error("report called while a line was being reported")
		}
		inReport = true
		got = append(got, line)
		inReport = false
	}
	var logged bytes.Buffer
	progress, returned := serialProgress(report, slog.New(slog.NewTextHandler(&logged, nil)), "intercept: ")

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			progress("joining")
		}()
	}
	wg.Wait()
	returned()
	progress("a pod joined late")

	if diff := cmp.Diff(strings.Split(strings.Repeat("joining,", 8), ",")[:8], got); diff != "" {
		t.Errorf("lines reported (-want +got):\n%s", diff)
	}
	if !strings.Contains(logged.String(), `msg="intercept: a pod joined late"`) {
		t.Errorf("the line after the return was not logged; log: %q", logged.String())
	}

	// No report and no log: nothing to call, nothing panics.
	progress, returned = serialProgress(nil, nil, "")
	progress("before")
	returned()
	progress("after")
}
