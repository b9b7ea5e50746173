package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tetherkube/tether/agent"
	agentserver "github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/tunnel"
)

// inProcessAgent runs a real agent on loopback and returns a function
// that opens a link to it.
func inProcessAgent(t *testing.T) func() *agent.Link {
	t.Helper()
	addr, token := inProcessAgentAddr(t)
	return func() *agent.Link {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		l, err := agent.Connect(context.Background(), c, tunnel.DefaultConfig(token))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
}

// inProcessAgentAddr runs a real agent on loopback and returns its
// tunnel address and token.
func inProcessAgentAddr(t *testing.T) (string, []byte) {
	t.Helper()
	token := []byte("0123456789abcdef-profile-test")
	cfg := agentserver.DefaultConfig()
	cfg.Token = token
	cfg.Record.Off = true
	a, err := agentserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.ServeListeners(ctx, tl, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return tl.Addr().String(), token
}

func profileFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	slices.Sort(names)
	return names
}

// TestAgentProfiles: with TETHER_PROFILE_DIR, every agent link profiles
// its agent and writes agent-POD.* when it closes or the daemon quits; a
// second link to an agent already profiled writes nothing of its own.
func TestAgentProfiles(t *testing.T) {
	dial := inProcessAgent(t)
	dir := t.TempDir()
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	d.ProfileAgents(dir)
	ctx := context.Background()

	first, second := dial(), dial()
	d.agentProf.watch(ctx, "orders-1", first)
	d.agentProf.watch(ctx, "orders-1", second) // refused: one at a time
	second.Close()
	if got := profileFiles(t, dir); len(got) != 0 {
		t.Errorf("files after the refused link closed: %v, want none", got)
	}
	first.Close()
	want := []string{"agent-orders-1.block.pprof", "agent-orders-1.cpu.pprof", "agent-orders-1.heap.pprof", "agent-orders-1.mutex.pprof"}
	if got := profileFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files after the link closed: %v, want %v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "agent-orders-1.cpu.pprof"))
	if err != nil || !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("the CPU profile is not a gzipped pprof profile: %v", err)
	}

	third := dial() // the same pod again, still open when the daemon quits
	d.agentProf.watch(ctx, "orders-1", third)
	d.agentProf.collectAll()
	if got := profileFiles(t, dir); len(got) != 8 || !slices.Contains(got, "agent-orders-1-2.cpu.pprof") {
		t.Errorf("files after quitting: %v, want agent-orders-1-2.* beside the first", got)
	}
	third.Close() // collected already: nothing more
	if got := profileFiles(t, dir); len(got) != 8 {
		t.Errorf("files after the last link closed: %v", got)
	}
}
