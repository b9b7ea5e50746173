// Package server is tether's in-pod agent: it serves the agent API
// (package agent) per tunnel. It sits in front of the app's
// ports: each connection goes to the app container, or, while a daemon
// intercepts that port, through the daemon's tunnel to the laptop. It serves
// the tunnel (and the Agent control API inside it) on the pod's loopback
// interface only, where just the Kubernetes port-forward reaches it. For the
// direct path it connects out to the daemon that asks (DialBack); it never
// listens for it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/cpulimit"
	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/agent/internal/readyprobe"
	"github.com/tetherkube/tether/agent/internal/tap"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/tunnel"
)

// Config holds what the agent needs to run.
type Config struct {
	// TunnelAddr is where the agent accepts tunnels. It must be a loopback
	// address: only the port-forward through the API server reaches it.
	TunnelAddr string
	// Token is the secret a daemon must present to open a tunnel.
	Token []byte
	// BootstrapTTL, when positive, makes Token a bootstrap token (an
	// inspection agent's, readable in its pod's spec): it opens one tunnel,
	// within BootstrapTTL of the agent's start, and the daemon then rotates
	// it (Rotate). Zero: Token is accepted for the agent's life.
	BootstrapTTL time.Duration
	// Forwards are the ports the agent sits in front of.
	Forwards []agent.Forward
	// PodName and PodNamespace name the pod the agent runs in (downward API).
	PodName      string
	PodNamespace string
	// DialTimeout bounds the connection to the app.
	DialTimeout time.Duration
	// Record says how the agent records the HTTP exchanges it forwards.
	Record RecordConfig
	// CPULimit reads the CPU limit of the agent's container, in cores
	// (cpulimit.Quota); nil: none. Near it a mirror's copies give way to
	// the callers (cpulimit.Watch).
	CPULimit func() (cores float64, ok bool)
	// Jobs are the calls the agent serves (agent.AllJobs when nil); it
	// refuses the others with agent.ErrNotServed.
	Jobs []agent.Job
	// Logger receives the agent's logs. Nil discards them.
	Logger *slog.Logger
}

// RecordConfig shapes recording. Recording is on unless Off.
type RecordConfig struct {
	Off bool
	// Budget bounds the memory of everything recorded, bodies in flight
	// included; the oldest exchanges go first.
	Budget int
	// BodyCap is the most of each body kept; longer bodies are truncated.
	BodyCap int
	// Redactor removes secrets before anything is stored.
	Redactor recording.Redactor
	// Idle pauses recording once no tunnel has been open for this long
	// (0: never); the next tunnel resumes it. What was recorded stays
	// readable.
	Idle time.Duration
	// Passive also records from a copy of the pod's packets to the
	// forwards' app ports (agent/internal/tap, CAP_NET_RAW), so callers
	// the Service sends straight to the app are recorded too; the agent
	// may then step aside at once, whatever Idle. It records while the
	// agent runs.
	Passive bool
}

// Recording defaults: 64 MiB in all, 1 MiB per body.
const (
	DefaultRecordBudget  = 64 << 20
	DefaultRecordBodyCap = 1 << 20
)

// DefaultConfig returns a Config with the default tunnel address.
func DefaultConfig() Config {
	return Config{TunnelAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(agent.DefaultTunnelPort)), DialTimeout: 5 * time.Second,
		Record: RecordConfig{Budget: DefaultRecordBudget, BodyCap: DefaultRecordBodyCap, Idle: DefaultRecordIdle}}
}

// Validate checks the Config without doing any I/O.
func (c Config) Validate() error {
	var errs []error
	host, port, err := net.SplitHostPort(c.TunnelAddr)
	if err != nil {
		errs = append(errs, fmt.Errorf("tunnel address %q: %w", c.TunnelAddr, err))
	} else {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("tunnel address %q is not a loopback address: the agent serves only through the port-forward", c.TunnelAddr))
		}
		if port == "" {
			errs = append(errs, fmt.Errorf("tunnel address %q has no port", c.TunnelAddr))
		}
	}
	if err := tunnel.DefaultConfig(c.Token).Validate(); err != nil {
		errs = append(errs, err)
	}
	seen := map[int]bool{}
	for _, f := range c.Forwards {
		for _, p := range []int{f.ListenPort, f.AppPort} {
			if p <= 0 || p > 65535 {
				errs = append(errs, fmt.Errorf("forward %d->%d: port %d out of range 1-65535", f.ListenPort, f.AppPort, p))
			}
		}
		if f.ListenPort == f.AppPort {
			errs = append(errs, fmt.Errorf("forward %d->%d: the agent cannot listen on the app's own port", f.ListenPort, f.AppPort))
		}
		if seen[f.ListenPort] {
			errs = append(errs, fmt.Errorf("port %d is forwarded twice", f.ListenPort))
		}
		seen[f.ListenPort] = true
	}
	if r := c.Record; !r.Off && (r.Budget < 1<<20 || r.BodyCap < 0 || r.BodyCap > r.Budget/2) {
		errs = append(errs, fmt.Errorf("recording: budget %d must be at least 1 MiB and the body cap %d at most half of it", r.Budget, r.BodyCap))
	}
	if c.BootstrapTTL < 0 {
		errs = append(errs, fmt.Errorf("bootstrap TTL must not be negative, got %s", c.BootstrapTTL))
	}
	if c.Record.Passive && c.Record.Off {
		errs = append(errs, errors.New("recording from packets (--record-passive) needs recording on (drop --no-record)"))
	}
	if c.Record.Passive && len(c.Forwards) == 0 {
		errs = append(errs, errors.New("recording from packets (--record-passive) needs a forward: it records the app ports behind them"))
	}
	if c.Record.Idle < 0 {
		errs = append(errs, fmt.Errorf("recording idle time must not be negative, got %s", c.Record.Idle))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial timeout must be positive, got %s", c.DialTimeout))
	}
	return errors.Join(errs...)
}

// Agent is a running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	keys    *keyring
	prof    profiler

	mu sync.Mutex
	// ports holds each forwarded port's intercepts (intercepts.go).
	ports map[int]*portState
	// directs maps a tunnel to its direct path, while that lives.
	directs map[*tunnel.Session]*tunnel.Session
	// ring holds the recorded exchanges; nil when recording is off.
	ring *httprec.Ring
	// recOpts shape every connection's recording.
	recOpts httprec.Options
	// tap records from the pod's packets (Record.Passive); nil otherwise.
	tap *tap.Tap
	// idle knows whether a daemon uses the agent (idle.go).
	idle *idleClock
	// aside: the agent stepped aside and refuses intercepts (aside.go).
	aside bool
	// cpu says when the agent runs close to CPULimit; nil without one.
	cpu *cpulimit.Watch
	// nonces are the readiness probes the agent answers now (ready.go).
	nonces *readyprobe.Nonces
	// dialDirect opens a direct path (tunnel.DialDirect; tests replace it).
	dialDirect func(ctx context.Context, addr string, der []byte, cfg tunnel.Config) (*tunnel.Session, error)
}

// New returns an Agent for cfg, or an error when cfg is invalid.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, started: time.Now(), ports: map[int]*portState{},
		directs: map[*tunnel.Session]*tunnel.Session{}, dialDirect: tunnel.DialDirect,
		nonces: readyprobe.NewNonces(nil), idle: newIdleClock(time.Now)}
	a.keys = newKeyring(cfg.Token, cfg.BootstrapTTL, time.Now)
	if cfg.CPULimit != nil {
		a.cpu = cpulimit.NewWatch(cpulimit.Config{Limit: cfg.CPULimit})
	}
	if !cfg.Record.Off {
		a.ring = httprec.NewRing(cfg.Record.Budget)
		a.recOpts = httprec.DefaultOptions()
		a.recOpts.BodyCap, a.recOpts.Redactor = cfg.Record.BodyCap, cfg.Record.Redactor
	}
	return a, nil
}

// Serve listens on the tunnel address and every forward's port and serves
// until ctx is done.
func (a *Agent) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	tl, err := lc.Listen(ctx, "tcp", a.cfg.TunnelAddr)
	if err != nil {
		return fmt.Errorf("listen for tunnels on %s: %w", a.cfg.TunnelAddr, err)
	}
	forwards := make([]net.Listener, 0, len(a.cfg.Forwards))
	for _, f := range a.cfg.Forwards {
		// All interfaces: this is where the Service sends its traffic.
		l, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(f.ListenPort))
		if err != nil {
			tl.Close()
			for _, l := range forwards {
				l.Close()
			}
			return fmt.Errorf("listen on forwarded port %d: %w", f.ListenPort, err)
		}
		forwards = append(forwards, l)
	}
	return a.ServeListeners(ctx, tl, forwards)
}

// ServeListeners serves tunnels on tl and a.cfg.Forwards[i] on forwards[i]
// until ctx is done; it closes the listeners.
func (a *Agent) ServeListeners(ctx context.Context, tl net.Listener, forwards []net.Listener) error {
	if len(forwards) != len(a.cfg.Forwards) {
		return fmt.Errorf("%d forward listeners for %d forwards", len(forwards), len(a.cfg.Forwards))
	}
	a.log.Info("agent serving", "tunnel", tl.Addr().String(), "forwards", a.cfg.Forwards,
		"pod", a.cfg.PodNamespace+"/"+a.cfg.PodName)
	if a.ring != nil {
		a.idle.start(a.cfg.Record.Idle, a.logPaused)
	}
	if a.cfg.Record.Passive {
		ports := map[int]int{}
		for _, f := range a.cfg.Forwards {
			ports[f.AppPort] = f.ListenPort
		}
		opts := a.recOpts
		opts.Observe = a.mirrorFromPackets
		t, err := tap.Start(tap.Config{Ports: ports, Pod: a.cfg.PodName, Ring: a.ring, Options: opts, Logger: a.log})
		if err != nil {
			tl.Close()
			for _, l := range forwards {
				l.Close()
			}
			return fmt.Errorf("--record-passive: %w (the agent container needs the NET_RAW capability)", err)
		}
		a.tap = t
		defer t.Close()
	}
	var wg sync.WaitGroup
	if a.cpu != nil {
		if cores, ok := a.cfg.CPULimit(); ok {
			a.log.Info("CPU limit: mirrored copies give way near it", "cores", cores)
		}
		a.cpu.Start(ctx)
	}
	errs := make(chan error, 1+len(forwards))
	wg.Add(1 + len(forwards))
	go func() {
		defer wg.Done()
		errs <- a.serveTunnels(ctx, tl)
	}()
	for i, l := range forwards {
		go func() {
			defer wg.Done()
			errs <- a.serveForward(ctx, a.cfg.Forwards[i], l)
		}()
	}
	<-ctx.Done()
	tl.Close()
	for _, l := range forwards {
		l.Close()
	}
	wg.Wait()
	a.closeRouters()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// serving returns nil when the agent serves one of jobs, the jobs call
// belongs to, else why call is refused.
func (a *Agent) serving(call string, jobs ...agent.Job) error {
	if a.cfg.Jobs == nil || slices.ContainsFunc(jobs, func(j agent.Job) bool { return slices.Contains(a.cfg.Jobs, j) }) {
		return nil
	}
	return fmt.Errorf("%s is part of the %s job; this agent serves %s only (--serve): %w",
		call, strings.ReplaceAll(agent.JoinJobs(jobs), ",", " or "), agent.JoinJobs(a.cfg.Jobs), agent.ErrNotServed)
}

// forward returns the Forward listening on port.
func (a *Agent) forward(port int) (agent.Forward, bool) {
	for _, f := range a.cfg.Forwards {
		if f.ListenPort == port {
			return f, true
		}
	}
	return agent.Forward{}, false
}
