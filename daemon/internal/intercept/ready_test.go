package intercept

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/agent"
)

// fakeAgent is an agent's readiness calls: it records what it was asked
// and answers as told.
type fakeAgent struct {
	agent.Service // nil: any other call panics
	expectErr     error
	result        agent.ServiceProbeResult
	probeErr      error
	block         bool // ProbeService waits for ctx's end

	mu      sync.Mutex
	nonces  [][]byte // ExpectProbe's, forgotten ones prefixed "forget:"
	probes  []agent.ServiceProbeRequest
	expired bool
}

func (f *fakeAgent) ExpectProbe(_ context.Context, nonce []byte, ttl time.Duration, forget bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if forget {
		f.nonces = append(f.nonces, append([]byte("forget:"), nonce...))
		return nil
	}
	if ttl <= 0 {
		f.expired = true
	}
	f.nonces = append(f.nonces, nonce)
	return f.expectErr
}

func (f *fakeAgent) ProbeService(ctx context.Context, req agent.ServiceProbeRequest) (agent.ServiceProbeResult, error) {
	f.mu.Lock()
	f.probes = append(f.probes, req)
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return agent.ServiceProbeResult{}, ctx.Err()
	}
	return f.result, f.probeErr
}

func ready(pods ...string) agent.ServiceProbeResult {
	r := agent.ServiceProbeResult{Ready: true, Answered: map[string]int{}}
	for _, p := range pods {
		r.Answered[p] = 3
	}
	return r
}

func TestReadyCheck(t *testing.T) {
	nodes := map[string]string{"orders-a": "node-1", "orders-b": "node-1", "orders-c": "node-2"}
	allPods := []string{"orders-a", "orders-b", "orders-c"}
	for _, tc := range []struct {
		name string
		// agents by pod, made per case
		agents       func() map[string]*fakeAgent
		cancel       bool
		wantErr      error
		wantProbers  []string // pods asked to probe
		wantProgress string   // in the last progress line
	}{
		{
			name: "every node sees every agent",
			agents: func() map[string]*fakeAgent {
				return map[string]*fakeAgent{"orders-a": {result: ready(allPods...)}, "orders-b": {}, "orders-c": {result: ready(allPods...)}}
			},
			wantProbers: []string{"orders-a", "orders-c"}, wantProgress: "reaches the agents of 3 pods from 2 nodes",
		},
		{
			name: "one node still sends to the app",
			agents: func() map[string]*fakeAgent {
				stale := agent.ServiceProbeResult{Answered: map[string]int{"orders-a": 1}, Missed: 40, Elapsed: 10 * time.Second}
				return map[string]*fakeAgent{"orders-a": {result: ready(allPods...)}, "orders-b": {}, "orders-c": {result: stale}}
			},
			wantProbers: []string{"orders-a", "orders-c"},
			wantProgress: "warning: could not confirm that service/orders port 80 reaches the agents (from node node-2 (pod orders-c) in 10s, " +
				"of 41 connections 1 reached an agent, 40 something else, 0 none; never answered: orders-b, orders-c)",
		},
		{
			name: "the probe cannot reach the Service",
			agents: func() map[string]*fakeAgent {
				blocked := agent.ServiceProbeResult{Failed: 7, LastError: "not connected: i/o timeout"}
				return map[string]*fakeAgent{"orders-a": {result: blocked}, "orders-b": {}, "orders-c": {result: ready(allPods...)}}
			},
			wantProbers:  []string{"orders-a", "orders-c"},
			wantProgress: "from node node-1 (pod orders-a) 10.43.0.10:80 could not be reached (not connected: i/o timeout)",
		},
		{
			name: "a prober fails",
			agents: func() map[string]*fakeAgent {
				return map[string]*fakeAgent{"orders-a": {probeErr: errors.New("boom")}, "orders-b": {}, "orders-c": {result: ready(allPods...)}}
			},
			wantProbers: []string{"orders-a", "orders-c"}, wantProgress: "pod orders-a could not probe: boom",
		},
		{
			name: "an agent that cannot expect probes",
			agents: func() map[string]*fakeAgent {
				return map[string]*fakeAgent{"orders-a": {}, "orders-b": {expectErr: errors.New("unknown method ExpectProbe")}, "orders-c": {}}
			},
			wantErr: errNoProbe, wantProgress: "checking",
		},
		{
			name:   "canceled",
			cancel: true,
			agents: func() map[string]*fakeAgent {
				return map[string]*fakeAgent{"orders-a": {block: true}, "orders-b": {}, "orders-c": {block: true}}
			},
			wantErr: context.Canceled, wantProbers: []string{"orders-a", "orders-c"}, wantProgress: "checking",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakes := tc.agents()
			agents := map[string]agent.Service{}
			for p, f := range fakes {
				agents[p] = f
			}
			var lines []string
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			err := readyCheck{svc: "service/orders port 80", addr: "10.43.0.10:80", agents: agents, nodes: nodes,
				log: slog.New(slog.DiscardHandler), progress: func(s string) { lines = append(lines, s) }}.run(ctx)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("run = %v, want %v", err, tc.wantErr)
			}
			if last := lines[len(lines)-1]; !strings.Contains(last, tc.wantProgress) {
				t.Errorf("last progress line %q, want it to contain %q", last, tc.wantProgress)
			}
			var probers []string
			var nonce []byte
			for _, p := range allPods {
				f := fakes[p]
				if len(f.probes) > 0 {
					probers = append(probers, p)
					req := f.probes[0]
					if diff := cmp.Diff(agent.ServiceProbeRequest{Address: "10.43.0.10:80", Nonce: req.Nonce, Expect: allPods, Timeout: ReadyTimeout}, req); diff != "" {
						t.Errorf("%s's probe (-want +got):\n%s", p, diff)
					}
				}
				// Every agent learns the one nonce first and forgets it at the end.
				if len(f.nonces) != 2 || string(f.nonces[1]) != "forget:"+string(f.nonces[0]) || len(f.nonces[0]) != agent.ProbeNonceSize || f.expired {
					t.Errorf("%s's ExpectProbe calls: %q", p, f.nonces)
				} else if nonce == nil {
					nonce = f.nonces[0]
				} else if string(nonce) != string(f.nonces[0]) {
					t.Errorf("%s got another nonce", p)
				}
			}
			if diff := cmp.Diff(tc.wantProbers, probers); diff != "" {
				t.Errorf("probers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitReadyFallsBack: with no agent to ask (a start without tunnels)
// the wait is the fixed settle; a headless Service needs no wait.
func TestWaitReadyFallsBack(t *testing.T) {
	m := &Manager{CS: fake.NewClientset(), Settle: time.Millisecond}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.10"}}
	svc.Name = "orders"
	port := corev1.ServicePort{Port: 80}
	var lines []string
	progress := func(s string) { lines = append(lines, s) }
	if err := m.waitReady(context.Background(), svc, port, "app=orders", nil, nil, progress); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "letting the nodes apply service/orders's new endpoints") {
		t.Errorf("progress %q, want the fixed wait", lines)
	}
	lines = nil
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	if err := m.waitReady(context.Background(), svc, port, "app=orders", map[string]agent.Service{"orders-a": &fakeAgent{}}, nil, progress); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 0 {
		t.Errorf("headless Service: progress %q, want none", lines)
	}
}
