package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/tunnel"
)

// The laptop's end of the personal rows (the daemon's end of each agent's
// tunnel and the developer's server behind it) runs in a process of its
// own, this binary started with -laptop-end: on a real laptop that work
// takes none of the cluster's CPU, so here it must not run in the process
// of the load and the app. With -laptop-sched idle (the default) the
// process runs under SCHED_IDLE: it gets only the CPU time the cluster's
// side leaves, as a laptop's own CPU would cost the cluster nothing.
// The parent speaks to it through its stdin and stdout, one JSON line
// each way: a laptopSpec in, "ready", then, when stdin closes, a
// laptopResult out.

// laptopAgent is one agent the laptop's end connects to, and what it asks.
type laptopAgent struct {
	Name, Tunnel, Token string
	Port                int // the agent's front port, the intercept's ListenPort
	Intercept           *laptopIntercept
}

type laptopIntercept struct {
	ID      string
	Mirror  bool
	Headers []string
}

type laptopSpec struct {
	Agents []laptopAgent
	// Profile names the agent profiled for the whole run (-profile-dir).
	Profile string
	// Counts names the agent whose first intercept's counts are returned.
	Counts string
}

type laptopResult struct {
	Copies, Dropped, Shed uint64
	Profile               map[string][]byte `json:",omitempty"`
}

// laptopEnd is the child process's whole life (bench -laptop-end).
func laptopEnd() error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read the spec: %w", err)
	}
	var spec laptopSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("the spec: %w", err)
	}
	ctx := context.Background()
	lapL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lap := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		io.WriteString(w, `{"id":7,"item":"kettle"}`)
	})}
	go lap.Serve(lapL)
	links := map[string]*agent.Link{}
	for _, a := range spec.Agents {
		link, err := connectBenchAgent(ctx, a, lapL.Addr().String())
		if err != nil {
			return fmt.Errorf("agent %s: %w", a.Name, err)
		}
		defer link.Close()
		links[a.Name] = link
		if i := a.Intercept; i != nil {
			if err := link.Agent().Intercept(ctx, agent.InterceptSpec{ListenPort: a.Port, ID: i.ID, Owner: "bench", Mirror: i.Mirror,
				Filter: httpfilter.Spec{Headers: i.Headers}}); err != nil {
				return fmt.Errorf("intercept on agent %s: %w", a.Name, err)
			}
		}
	}
	if spec.Profile != "" {
		if err := links[spec.Profile].Agent().StartProfile(ctx, agent.ProfileRequest{}); err != nil {
			return fmt.Errorf("profile agent %s: %w", spec.Profile, err)
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, in) // until the parent closes stdin
	var res laptopResult
	if spec.Profile != "" {
		prof, err := links[spec.Profile].Agent().StopProfile(ctx)
		if err != nil {
			return fmt.Errorf("agent %s's profile: %w", spec.Profile, err)
		}
		res.Profile = map[string][]byte{"cpu": prof.CPU, "block": prof.Block, "mutex": prof.Mutex, "heap": prof.Heap}
	}
	if spec.Counts != "" {
		info, err := links[spec.Counts].Agent().Info(ctx)
		if err != nil {
			return fmt.Errorf("agent %s's counts: %w", spec.Counts, err)
		}
		if len(info.Forwards) != 1 || len(info.Forwards[0].Intercepts) != 1 {
			return fmt.Errorf("agent %s lost its intercept: %+v", spec.Counts, info.Forwards)
		}
		ic := info.Forwards[0].Intercepts[0]
		res.Copies, res.Dropped, res.Shed = ic.Requests, ic.Dropped, ic.Shed
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// connectBenchAgent opens the daemon's end of agent a's tunnel and joins
// each intercepted connection to the laptop's server.
func connectBenchAgent(ctx context.Context, a laptopAgent, laptop string) (*agent.Link, error) {
	c, err := net.Dial("tcp", a.Tunnel)
	if err != nil {
		return nil, err
	}
	cfg := tunnel.DaemonConfig([]byte(a.Token))
	// The daemon's side of the tunnel logs as the daemon would: a tunnel
	// that ends under load says why.
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("agent", a.Name)
	link, err := agent.Connect(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			st, err := link.AcceptConn(context.Background())
			if err != nil {
				return
			}
			go func() {
				l, err := net.Dial("tcp", laptop)
				if err != nil {
					st.Close()
					return
				}
				tunnel.Join(st, l)
			}()
		}
	}()
	return link, nil
}

// laptopProc is the parent's handle on the laptop's end.
type laptopProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startLaptopEnd starts this binary with -laptop-end, under sched ("idle"
// or "normal"), and waits until it has connected and intercepted.
func startLaptopEnd(ctx context.Context, spec laptopSpec, sched string) (*laptopProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-laptop-end")
	if sched == "idle" {
		// chrt (util-linux) sets the policy before the exec, so every
		// thread the Go runtime starts inherits it.
		cmd = exec.CommandContext(ctx, "chrt", "--idle", "0", self, "-laptop-end")
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &laptopProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		p.kill()
		return nil, err
	}
	line, err := p.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		p.kill()
		return nil, fmt.Errorf("the laptop's end did not start (%q, %v)", line, err)
	}
	return p, nil
}

// finish ends the laptop's end and returns its result.
func (p *laptopProc) finish() (laptopResult, error) {
	p.stdin.Close()
	var res laptopResult
	err := json.NewDecoder(p.out).Decode(&res)
	if werr := p.cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return res, fmt.Errorf("the laptop's end: %w", err)
	}
	return res, nil
}

func (p *laptopProc) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}
