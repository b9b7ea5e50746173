package server

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/agent/internal/cpulimit"
	"github.com/tetherkube/tether/internal/buildinfo"
)

// Run parses the agent's command line and serves until ctx is done.
//
//	tether-agent --token-file /var/run/tether/token --forward 18080:8080 [--forward ...]
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("tether-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.TunnelAddr, "tunnel", cfg.TunnelAddr, "loopback address where daemons open tunnels")
	tokenFile := fs.String("token-file", "", "file holding the token a daemon must present")
	tokenEnv := fs.String("token-env", "", "environment variable holding the token (for ephemeral containers, which cannot mount the Secret)")
	fs.DurationVar(&cfg.BootstrapTTL, "bootstrap-ttl", 0, "accept the token for one tunnel only, within this time of the start, until a daemon rotates it (inspection agents, whose token is in the pod's spec)")
	fs.Func("serve", "JOB[,JOB...]: serve only these of intercept, probe, capture, run (default all)", func(v string) error {
		jobs, err := agent.ParseJobs(v)
		cfg.Jobs = jobs
		return err
	})
	fs.Func("forward", "LISTEN:APP: accept the Service's traffic on LISTEN, pass it to the app's APP port (repeatable)", func(v string) error {
		f, err := parseForward(v)
		if err == nil {
			cfg.Forwards = append(cfg.Forwards, f)
		}
		return err
	})
	fs.BoolVar(&cfg.Record.Off, "no-record", false, "do not record the HTTP exchanges forwarded")
	fs.Func("record-budget", "memory for recorded exchanges, bytes or with Ki/Mi/Gi (default 64Mi)", func(v string) error {
		n, err := parseSize(v)
		cfg.Record.Budget = n
		return err
	})
	fs.Func("record-body-cap", "most of each body recorded, bytes or with Ki/Mi (default 1Mi)", func(v string) error {
		n, err := parseSize(v)
		cfg.Record.BodyCap = n
		return err
	})
	fs.Func("redact", "NAME[,NAME...]: also redact these headers and JSON fields (repeatable)", func(v string) error {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				cfg.Record.Redactor.Names = append(cfg.Record.Redactor.Names, n)
			}
		}
		return nil
	})
	fs.DurationVar(&cfg.Record.Idle, "record-idle", cfg.Record.Idle, "pause recording once no daemon has had a tunnel open this long (0: never); the next tunnel resumes it")
	fs.BoolVar(&cfg.Record.Passive, "record-passive", false, "also record from a copy of the pod's packets to the app ports (needs CAP_NET_RAW): callers the Service sends straight to the app are recorded too, and the agent may step aside at once")
	fs.BoolVar(&cfg.Record.Redactor.Off, "no-redact", false, "record secrets (Authorization, Cookie, ...) as seen")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		b := buildinfo.Get()
		_, err := fmt.Fprintf(stderr, "tether-agent %s %s %s\n", b.Version, b.Commit, b.GoVersion)
		return err
	}
	switch {
	case *tokenFile != "":
		token, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("read token: %w", err)
		}
		cfg.Token = bytes.TrimSpace(token)
	case *tokenEnv != "":
		cfg.Token = []byte(strings.TrimSpace(os.Getenv(*tokenEnv)))
	default:
		return fmt.Errorf("--token-file or --token-env is required")
	}
	if !cfg.Record.Off && os.Getenv("GOMEMLIMIT") == "" {
		// The recording ring holds up to the budget; without a limit the
		// garbage collector lets the heap grow to twice what is live.
		debug.SetMemoryLimit(int64(cfg.Record.Budget) + memoryHeadroom)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: a request through the agent is a chain of goroutine
		// hand-offs (yamux's receive loop, the copy, yamux's send loop),
		// and with an idle P each hand-off wakes another thread (futex)
		// that then spins looking for work (findRunnable: 25% of the
		// agent's CPU on the keep-alive row). Measured with `tether run`,
		// 10 interleaved pairs of 20,000 keep-alive requests on a loaded
		// 2-core machine: the agent's CPU per request 76-119 (mean 93) ->
		// 55-86 (mean 72) µs, lower in 9 pairs; p50 median 948 -> 881 µs,
		// lower in 6 pairs (worse when the machine was busiest); 128 MiB
		// up and down no slower. Bulk copies
		// spend their time in syscalls, which hand the P off anyway, and
		// the sidecar's default CPU limit of one core gives no second core
		// to use.
		runtime.GOMAXPROCS(1)
	}
	cfg.CPULimit = func() (float64, bool) {
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return 0, false
		}
		return cpulimit.Quota("/sys/fs/cgroup", string(self))
	}
	cfg.PodName = os.Getenv("POD_NAME")
	cfg.PodNamespace = os.Getenv("POD_NAMESPACE")
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, nil))
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Serve(ctx)
}

func parseForward(v string) (agent.Forward, error) {
	l, r, ok := strings.Cut(v, ":")
	if !ok {
		return agent.Forward{}, fmt.Errorf("forward %q: want LISTEN:APP, e.g. 18080:8080", v)
	}
	lp, err1 := strconv.Atoi(l)
	ap, err2 := strconv.Atoi(r)
	if err1 != nil || err2 != nil {
		return agent.Forward{}, fmt.Errorf("forward %q: ports must be numbers, e.g. 18080:8080", v)
	}
	return agent.Forward{ListenPort: lp, AppPort: ap}, nil
}

// memoryHeadroom is the agent's memory beyond the recording budget: the
// runtime, connections' buffers and the gRPC server.
const memoryHeadroom = 24 << 20

// parseSize reads "65536", "64Ki", "64Mi" or "1Gi".
func parseSize(v string) (int, error) {
	mult := 1
	for suffix, m := range map[string]int{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(v, suffix) {
			v, mult = strings.TrimSuffix(v, suffix), m
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: write bytes, or a number with Ki, Mi or Gi", v)
	}
	return n * mult, nil
}
