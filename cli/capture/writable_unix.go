//go:build !windows

package capture

import "golang.org/x/sys/unix"

// writable reports whether the user may create files in dir.
func writable(dir string) error { return unix.Access(dir, unix.W_OK) }
