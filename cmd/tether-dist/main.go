// Command tether-dist builds tether's release into a folder (`make dist`):
// see internal/dist.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tetherkube/tether/internal/dist"
)

func main() {
	cfg := dist.Config{Log: os.Stdout}
	flag.StringVar(&cfg.Version, "version", "", "the release's semantic version, v1.2.3 or v0.0.0-COMMIT (required)")
	flag.StringVar(&cfg.Out, "out", "dist", "the folder to write the release into")
	flag.StringVar(&cfg.Source, "source", ".", "the module's root")
	flag.StringVar(&cfg.ReleaseURL, "release-url", "https://github.com/tetherkube/tether/releases/download/{version}/{file}", "where the archives are downloaded from")
	flag.StringVar(&cfg.AgentRepo, "agent-repo", "docker.io/tetherkube/tether-agent", "the agent image's repository")
	flag.Parse()
	if _, err := dist.Build(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}
