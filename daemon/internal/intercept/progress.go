package intercept

import (
	"log/slog"
	"sync"
)

// serialProgress wraps a start's progress (report; nil: none) for the
// goroutines that report while it runs: one line at a time, as a gRPC
// stream's Send is not for concurrent use. After returned is called (when
// the start returns) a line goes to log instead, prefixed: the caller's
// stream has ended by then, but work the start left running goes on.
func serialProgress(report func(string), log *slog.Logger, prefix string) (progress func(string), returned func()) {
	if report == nil {
		report = func(string) {}
	}
	var mu sync.Mutex
	done := false
	progress = func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			report(line)
		} else if log != nil {
			log.Info(prefix + line)
		}
	}
	returned = func() {
		mu.Lock()
		done = true
		mu.Unlock()
	}
	return progress, returned
}
