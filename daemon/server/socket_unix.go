//go:build !windows

package server

import "os"

// restrictSocket lets only the daemon's user connect to the socket (its
// folder is already the user's alone: daemon.Paths.EnsureDir).
func restrictSocket(path string) error { return os.Chmod(path, 0o600) }
