// Command tether is the tether CLI; installed as kubectl-tether it runs as
// `kubectl tether`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/app"
	"github.com/tetherkube/tether/cli/cmdutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	writeProfiles := startProfiles(os.Args[1:])
	err := app.Run(ctx, streams, os.Args[0], os.Args[1:])
	stop()
	writeProfiles()
	if msg := cmdutil.Message(err); msg != "" {
		fmt.Fprintln(os.Stderr, "Error:", msg)
	}
	os.Exit(cmdutil.ExitCode(err))
}
