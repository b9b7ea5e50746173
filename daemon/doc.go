// Package daemon is the API of tether's local daemon: the Service
// interface and its types, the daemon's socket Paths, the gRPC Client that
// implements Service over the daemon's unix socket, and the conversions to
// and from the wire (proto/daemon/v1). The daemon itself, one per user and
// kube context, holding the tunnels to the agents so intercepts outlive the
// CLI command that started them, is daemon/server; callers of this package
// do not know which side of the wire they are on.
package daemon
