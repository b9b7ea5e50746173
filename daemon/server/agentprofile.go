package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent"
)

// agentProfiles profiles every agent the daemon links to (`make bench
// PROFILE=1`): profiling starts when the link opens, and the daemon writes
// agent-POD.{cpu,block,mutex,heap}.pprof in dir when the link closes or
// the daemon quits, whichever comes first. A nil *agentProfiles does
// nothing.
type agentProfiles struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	live    map[*agent.Link]string // the pod of each link profiling
	written map[string]int         // profiles written per pod
	// collecting counts the collections under way, which collectAll
	// waits for: a link closed as `tether run` ended may still be
	// writing when quit comes, and the daemon's process ends after quit.
	collecting sync.WaitGroup
}

// stopTimeout bounds collecting one agent's profiles.
const stopTimeout = 20 * time.Second

// ProfileAgents makes the daemon profile every agent it links to and write
// the profiles in dir (TETHER_PROFILE_DIR). Call it before Serve.
func (d *Daemon) ProfileAgents(dir string) {
	d.agentProf = &agentProfiles{dir: dir, log: d.log, live: map[*agent.Link]string{}, written: map[string]int{}}
}

// watch starts profiling the agent of pod at the other end of l.
func (p *agentProfiles) watch(ctx context.Context, pod string, l *agent.Link) {
	if p == nil {
		return
	}
	if err := l.Agent().StartProfile(ctx, agent.ProfileRequest{}); err != nil {
		p.log.Warn("agent profile not started", "pod", pod, "err", err)
		return
	}
	p.mu.Lock()
	p.live[l] = pod
	p.mu.Unlock()
	l.BeforeClose(func() { p.collect(l) })
}

// collectAll writes the profiles of every link still open, and waits for
// those being written.
func (p *agentProfiles) collectAll() {
	if p == nil {
		return
	}
	p.mu.Lock()
	links := make([]*agent.Link, 0, len(p.live))
	for l := range p.live {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		p.collect(l)
	}
	p.collecting.Wait()
}

// collect stops l's agent's profile and writes it, once.
func (p *agentProfiles) collect(l *agent.Link) {
	p.mu.Lock()
	pod, ok := p.live[l]
	delete(p.live, l)
	if ok {
		p.collecting.Add(1)
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	defer p.collecting.Done()
	select {
	case <-l.Done():
		p.log.Warn("agent profile lost: the tunnel ended first", "pod", pod)
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	prof, err := l.Agent().StopProfile(ctx)
	if err != nil {
		p.log.Warn("agent profile not collected", "pod", pod, "err", err)
		return
	}
	p.mu.Lock()
	p.written[pod]++
	name := "agent-" + pod
	if n := p.written[pod]; n > 1 {
		name += fmt.Sprintf("-%d", n)
	}
	p.mu.Unlock()
	for kind, b := range map[string][]byte{"cpu": prof.CPU, "block": prof.Block, "mutex": prof.Mutex, "heap": prof.Heap} {
		if err := os.WriteFile(filepath.Join(p.dir, name+"."+kind+".pprof"), b, 0o600); err != nil {
			p.log.Warn("agent profile not written", "pod", pod, "err", err)
		}
	}
	p.log.Info("agent profile written", "pod", pod, "dir", p.dir, "name", name)
}
