package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/recording"
)

// TestStepAside: an agent steps aside only once nothing has intercepted
// it for its idle time; aside, it refuses intercepts (ErrAside) and still
// forwards to the app; back, it takes them again. A busy agent, or one
// that never idles, refuses to step aside (ErrBusy).
func TestStepAside(t *testing.T) {
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle = time.Minute })
	now := time.Now()
	h.agent.idle.mu.Lock()
	h.agent.idle.now = func() time.Time { return now }
	h.agent.idle.since = now
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
	aside := func() bool {
		t.Helper()
		i, err := client.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i.Aside
	}

	if err := client.StepAside(ctx, false); !errors.Is(err, agent.ErrBusy) {
		t.Fatalf("stepping aside within the idle time: %v, want ErrBusy", err)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "x"}); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Minute)
	if err := client.StepAside(ctx, false); !errors.Is(err, agent.ErrBusy) {
		t.Fatalf("stepping aside while intercepted: %v, want ErrBusy", err)
	}
	if err := client.Leave(ctx, h.frontPort, "x"); err != nil {
		t.Fatal(err)
	}
	advance(time.Minute)
	if aside() {
		t.Fatal("aside before being asked")
	}
	if err := client.StepAside(ctx, false); err != nil {
		t.Fatalf("stepping aside after the idle time: %v", err)
	}
	if !aside() {
		t.Error("Info does not say aside")
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "y"}); !errors.Is(err, agent.ErrAside) {
		t.Fatalf("intercepting an agent aside: %v, want ErrAside", err)
	}
	if got := h.get(); got != "app" {
		t.Errorf("aside, a connection reached %q, want the app", got)
	}
	if err := client.StepAside(ctx, true); err != nil {
		t.Fatal(err)
	}
	if aside() {
		t.Error("Info still says aside after back")
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "y"}); err != nil {
		t.Fatalf("intercepting after back: %v", err)
	}
	if got := h.get(); got != "laptop" {
		t.Errorf("intercepted after back, a connection reached %q, want the laptop", got)
	}
}

// TestStepAsideNeverIdle: an agent with --record-idle 0 stays in the path.
func TestStepAsideNeverIdle(t *testing.T) {
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle = 0 })
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.StepAside(context.Background(), false); !errors.Is(err, agent.ErrBusy) {
		t.Fatalf("stepping aside with --record-idle 0: %v, want ErrBusy", err)
	}
}

// TestStepAsidePassive: an agent that records from packets steps aside at
// once, though it never idles, and says so in Info; still not while
// something intercepts it.
func TestStepAsidePassive(t *testing.T) {
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle, c.Record.Passive = 0, true })
	ctx := context.Background()
	_, client, err := h.daemon(testToken, named(t, "laptop"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Passive == nil {
		t.Fatal("Info does not say the agent records from packets")
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := client.StepAside(ctx, false); !errors.Is(err, agent.ErrBusy) {
		t.Fatalf("stepping aside while intercepted: %v, want ErrBusy", err)
	}
	if err := client.Leave(ctx, h.frontPort, "x"); err != nil {
		t.Fatal(err)
	}
	if err := client.StepAside(ctx, false); err != nil {
		t.Fatalf("a passive recorder stepping aside: %v", err)
	}
}

// TestMirrorFromPackets: an agent that records from packets takes mirror
// intercepts while aside (and stays free to step aside while they run),
// and copies to them each exchange the tap recorded that the app
// answered whole; others are counted as dropped. A non-mirror intercept
// is still refused while aside.
func TestMirrorFromPackets(t *testing.T) {
	copies := make(chan string, 10)
	laptop := namedFunc(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		copies <- fmt.Sprintf("%s %s %s %s %s", r.Proto, r.Method, r.URL.RequestURI(), b, r.Header.Get("Authorization"))
	})
	h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Record.Idle, c.Record.Passive = 0, true })
	ctx := context.Background()
	_, client, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.StepAside(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "all"}); !errors.Is(err, agent.ErrAside) {
		t.Fatalf("intercepting all traffic while aside: %v, want ErrAside", err)
	}
	if err := client.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "m", Mirror: true, Filter: httpfilter.Spec{Headers: []string{"x-user=ana"}}}); err != nil {
		t.Fatalf("a mirror while aside: %v", err)
	}
	if err := client.StepAside(ctx, false); err != nil {
		t.Fatalf("stepping aside with only a mirror: %v", err)
	}
	exchange := func(target, user, errText string) *recording.Exchange {
		return &recording.Exchange{Port: h.frontPort, Proto: "HTTP/1.1", Error: errText,
			Request: recording.Message{Method: "POST", Target: target, Host: "orders", Body: []byte("abc"), BodySize: 3,
				Header: http.Header{"X-User": {user}, "Authorization": {"Bearer s3cret"}}},
			Response: &recording.Message{Status: 200}}
	}
	h.agent.mirrorFromPackets(exchange("/orders/7?x=1", "bob", ""))             // the filter does not match
	h.agent.mirrorFromPackets(exchange("/cut", "ana", "the connection closed")) // not whole: dropped
	h.agent.mirrorFromPackets(exchange("/orders/7?x=1", "ana", ""))
	select {
	case got := <-copies:
		if want := "HTTP/1.1 POST /orders/7?x=1 abc Bearer s3cret"; got != want {
			t.Errorf("the laptop got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no copy reached the laptop")
	}
	var st agent.InterceptStatus
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) { // counted once its answer is read
		info, err := client.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range info.Forwards {
			for _, s := range f.Intercepts {
				st = s
			}
		}
		if st.Requests == 1 || time.Now().After(deadline) {
			break
		}
	}
	if st.Requests != 1 || st.Dropped != 1 {
		t.Errorf("mirror status: %d delivered, %d dropped; want 1 and 1", st.Requests, st.Dropped)
	}
	select {
	case got := <-copies:
		t.Errorf("a second copy: %q", got)
	default:
	}
}
