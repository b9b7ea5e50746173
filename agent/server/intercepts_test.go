package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
)

// getAs sends one request to the agent's front port with header x-user.
func (h *harness) getAs(user, path string) string {
	h.t.Helper()
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+itoa(h.frontPort)+path, nil)
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPersonalIntercepts: two tunnels (two developers) intercept one port
// with their own header; each gets only its requests, the rest go to the
// app; an overlapping filter is refused naming the first owner; Info
// shows both; one leaving or its tunnel ending leaves the other's.
func TestPersonalIntercepts(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	anaLink, ana, err := h.daemon(testToken, named(t, "ana"))
	if err != nil {
		t.Fatal(err)
	}
	_, bob, err := h.daemon(testToken, named(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	spec := func(id, owner, header string) agent.InterceptSpec {
		return agent.InterceptSpec{ListenPort: h.frontPort, ID: id, Owner: owner, Filter: httpfilter.Spec{Headers: []string{header}}}
	}
	if err := ana.Intercept(ctx, spec("a1", "ana@laptop", "x-user=ana")); err != nil {
		t.Fatal(err)
	}
	if err := bob.Intercept(ctx, spec("b1", "bob@desk", "x-user=bob")); err != nil {
		t.Fatal(err)
	}
	got := []string{h.getAs("ana", "/"), h.getAs("bob", "/"), h.getAs("", "/"), h.getAs("carol", "/")}
	if diff := cmp.Diff([]string{"ana", "bob", "app", "app"}, got); diff != "" {
		t.Errorf("routing (-want +got):\n%s", diff)
	}

	err = bob.Intercept(ctx, spec("b2", "bob@desk", "x-user=~a.a"))
	if !errors.Is(err, agent.ErrAlreadyIntercepted) || !strings.Contains(err.Error(), "intercepted by ana@laptop for X-User=ana") {
		t.Errorf("overlapping filter: %v, want ErrAlreadyIntercepted naming ana@laptop", err)
	}
	if err := bob.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "b3"}); !errors.Is(err, agent.ErrAlreadyIntercepted) {
		t.Errorf("all traffic while filters intercept: %v, want ErrAlreadyIntercepted", err)
	}
	if err := bob.Intercept(ctx, spec("b4", "bob@desk", "x user=1")); !errors.Is(err, agent.ErrBadRouteFilter) {
		t.Errorf("bad filter: %v, want ErrBadRouteFilter", err)
	}

	info, err := ana.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := info.Forwards[0]
	type row struct {
		ID, Owner string
		Requests  uint64
	}
	var rows []row
	for _, ic := range f.Intercepts {
		rows = append(rows, row{ic.ID, ic.Owner, ic.Requests})
	}
	if diff := cmp.Diff([]row{{"a1", "ana@laptop", 1}, {"b1", "bob@desk", 1}}, rows); diff != "" || !f.Intercepted || f.ToApp != 2 {
		t.Errorf("info: intercepts (-want +got):\n%s intercepted %v, to app %d (want 2)", diff, f.Intercepted, f.ToApp)
	}

	if err := bob.Leave(ctx, h.frontPort, "b1"); err != nil {
		t.Fatal(err)
	}
	if got := []string{h.getAs("ana", "/"), h.getAs("bob", "/")}; !cmp.Equal(got, []string{"ana", "app"}) {
		t.Errorf("after bob left: %v", got)
	}
	anaLink.Close()
	waitUntil(t, func() bool { return h.getAs("ana", "/") == "app" })
	if err := bob.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "b5"}); err != nil {
		t.Errorf("all traffic once no one else intercepts: %v", err)
	}
	if got := h.getAs("carol", "/"); got != "bob" {
		t.Errorf("bob intercepting all: %q", got)
	}
}

// TestMirrorIntercept: the app answers every request; the mirror's laptop
// gets a copy of those its filter selects; Info counts them.
func TestMirrorIntercept(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	copies := make(chan string, 10)
	laptop := namedFunc(t, func(w http.ResponseWriter, r *http.Request) {
		copies <- r.URL.Path
		io.WriteString(w, "laptop")
	})
	_, c, err := h.daemon(testToken, laptop)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Intercept(ctx, agent.InterceptSpec{ListenPort: h.frontPort, ID: "m", Owner: "ana", Mirror: true,
		Filter: httpfilter.Spec{PathPrefix: "/orders/"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/orders/1", "/health", "/orders/2"} {
		if got := h.getAs("", p); got != "app" {
			t.Errorf("%s: %q, want the app's answer", p, got)
		}
	}
	var got []string
	for range 2 {
		select {
		case p := <-copies:
			got = append(got, p)
		case <-time.After(10 * time.Second):
			t.Fatalf("copies: got %v, want two", got)
		}
	}
	// The copies go over two connections (httproute/mirror.go): in no set order.
	slices.Sort(got)
	if diff := cmp.Diff([]string{"/orders/1", "/orders/2"}, got); diff != "" {
		t.Errorf("copies (-want +got):\n%s", diff)
	}
	waitUntil(t, func() bool {
		info, _ := c.Info(ctx)
		return len(info.Forwards[0].Intercepts) == 1 && info.Forwards[0].Intercepts[0].Requests == 2 && !info.Forwards[0].Intercepted
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
