package agent

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

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
	fs.Func("forward", "LISTEN:APP: accept the Service's traffic on LISTEN, pass it to the app's APP port (repeatable)", func(v string) error {
		f, err := parseForward(v)
		if err == nil {
			cfg.Forwards = append(cfg.Forwards, f)
		}
		return err
	})
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
	cfg.PodName = os.Getenv("POD_NAME")
	cfg.PodNamespace = os.Getenv("POD_NAMESPACE")
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, nil))
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Serve(ctx)
}

func parseForward(v string) (Forward, error) {
	l, r, ok := strings.Cut(v, ":")
	if !ok {
		return Forward{}, fmt.Errorf("forward %q: want LISTEN:APP, e.g. 18080:8080", v)
	}
	lp, err1 := strconv.Atoi(l)
	ap, err2 := strconv.Atoi(r)
	if err1 != nil || err2 != nil {
		return Forward{}, fmt.Errorf("forward %q: ports must be numbers, e.g. 18080:8080", v)
	}
	return Forward{ListenPort: lp, AppPort: ap}, nil
}
