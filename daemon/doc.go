// Package daemon is tether's local daemon: one per user and kube context,
// serving the Daemon API (proto/daemon/v1) on a unix socket only its user
// can open. It holds the tunnels to the agents, so intercepts outlive the
// CLI command that started them. Service is its API as a Go interface; the
// daemon implements it, GRPCServer exposes it, and Client implements it
// over the socket, so callers do not know which side of the wire they are on.
package daemon
