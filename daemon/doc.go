// Package daemon will hold tether's local daemon: one per user and kube
// context, serving the CLI (and IDEs) over a user-only unix socket and
// holding the tunnels to the agents. See issue "Core: connect, the
// daemon-agent tunnel, ...". Nothing is implemented here yet.
package daemon
