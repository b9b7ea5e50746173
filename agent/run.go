package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/tetherkube/tether/internal/buildinfo"
)

// Run parses the agent's command line and serves until ctx is done.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("tether-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.ListenAddr, "listen", cfg.ListenAddr, "loopback address of the control API")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		b := buildinfo.Get()
		_, err := fmt.Fprintf(stderr, "tether-agent %s %s %s\n", b.Version, b.Commit, b.GoVersion)
		return err
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
