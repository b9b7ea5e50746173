//go:build !linux

package netns

import (
	"context"

	"github.com/tetherkube/tether/internal/errdefs"
)

var errNotLinux = errdefs.User("the namespace network mode needs Linux (user and network namespaces): use --network proxy, which works on this system")

// MaybeInit does nothing outside Linux.
func MaybeInit() {}

// Check says the namespace mode needs Linux.
func Check() error { return errNotLinux }

// Run says the namespace mode needs Linux.
func Run(ctx context.Context, cfg Config) (int, error) { return 0, errNotLinux }
