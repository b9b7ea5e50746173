package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/recording"
)

// TestRecordingPausesWhenIdle: an agent that nothing intercepts records
// for Record.Idle, then forwards without recording; an intercept resumes
// recording, and its end starts the idle time again. Info says so.
func TestRecordingPausesWhenIdle(t *testing.T) {
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle = time.Minute })
	start := time.Now()
	now := start
	h.agent.idle.mu.Lock()
	h.agent.idle.now = func() time.Time { return now }
	h.agent.idle.since = start
	h.agent.idle.mu.Unlock()
	advance := func(d time.Duration) {
		h.agent.idle.mu.Lock()
		now = now.Add(d)
		h.agent.idle.mu.Unlock()
	}
	ctx := context.Background()
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	// recorded sends one request and reports whether the agent recorded
	// its connection.
	recorded := func(want string) bool {
		t.Helper()
		count := func() uint64 {
			st, err := client.Exchanges(ctx, agent.ExchangesRequest{WithoutBodies: true}, func([]*recording.Exchange) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			return st.Connections
		}
		before := count()
		if got := h.get(); got != want {
			t.Fatalf("served by %q, want %s", got, want)
		}
		// The connection is counted as its recording ends, which may be
		// just after the answer: give it a second (a busy machine once
		// took longer than the immediate look).
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if count() > before {
				return true
			}
		}
		return false
	}
	info := func() agent.Info {
		t.Helper()
		i, err := client.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}

	if !recorded("app") {
		t.Error("a new agent did not record")
	}
	advance(time.Minute)
	if recorded("app") {
		t.Error("recorded after a minute with nothing intercepting")
	}
	if i := info(); !i.RecordingPaused || !i.IdleSince.Equal(start) || i.RecordIdle != time.Minute {
		t.Errorf("idle agent's info: paused %v, idle since %v (want %v), record idle %s", i.RecordingPaused, i.IdleSince, start, i.RecordIdle)
	}

	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "x"}); err != nil {
		t.Fatal(err)
	}
	advance(time.Hour)
	if !recorded("laptop") {
		t.Error("an intercept did not resume recording")
	}
	if i := info(); i.RecordingPaused || !i.IdleSince.IsZero() {
		t.Errorf("intercepted agent's info: paused %v, idle since %v", i.RecordingPaused, i.IdleSince)
	}
	if err := client.Leave(ctx, h.frontPort, ""); err != nil {
		t.Fatal(err)
	}
	left := now
	advance(59 * time.Second)
	if !recorded("app") {
		t.Error("stopped recording before its idle time after the intercept ended")
	}
	if i := info(); i.RecordingPaused || !i.IdleSince.Equal(left) {
		t.Errorf("after leave: paused %v, idle since %v (want %v)", i.RecordingPaused, i.IdleSince, left)
	}
	advance(time.Second)
	if recorded("app") {
		t.Error("recorded after its idle time")
	}
}

func TestRecordingNeverPausesWithIdleZero(t *testing.T) {
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle = 0 })
	h.agent.idle.mu.Lock()
	h.agent.idle.now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	h.agent.idle.mu.Unlock()
	if !h.agent.recording() {
		t.Error("an agent with no idle time stopped recording")
	}
	cfg := DefaultConfig()
	cfg.Token = testToken
	cfg.Record.Idle = -time.Second
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "idle time must not be negative") {
		t.Errorf("a negative idle time: %v", err)
	}
}
