// Command tether-demo is the orders service tether's demo and tests
// intercept, and the small client the tests run inside pods.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherkube/tether/integration/demoapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := demoapp.Main(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tether-demo:", err)
		os.Exit(1)
	}
}
