// Package netns runs a command (CMD) as if it ran in a pod: in its own
// user, network and mount namespaces, created without root, without a
// setuid helper and without any capability on the host (Linux only; on
// other systems Run and Check return a user error that points at
// `--network proxy`).
//
// # How
//
// Run re-executes the running binary (/proc/self/exe) as a hidden init
// (argv[1] == InitArg, recognised by MaybeInit before anything else runs)
// in new user, network and mount namespaces, with the caller's uid and gid
// mapped to themselves and CAP_NET_ADMIN and CAP_SYS_ADMIN as ambient
// capabilities, which hold in the new user namespace only. The init brings
// lo up, creates a TUN device with addresses and default routes, makes its
// mounts private, bind-mounts the pod's resolv.conf and Files read-only,
// hands the TUN's fd to Run over a socketpair (SCM_RIGHTS), and starts CMD
// with no capabilities and no_new_privs. It stays as a small helper in the
// namespace: it creates sockets there on Run's request (Run uses them for
// the loopback bridge) and reports CMD's exit status.
//
// Run terminates the TUN's packets with gVisor's userspace TCP/IP stack:
// TCP to an address in Cluster (or to a nameserver of ResolvConf) goes
// through Dial, out of the target pod; the handshake completes only once
// Dial succeeded, else CMD gets a reset (connection refused). Any other
// TCP and UDP leaves through the machine's own network from Run's process.
// DNS over UDP to ResolvConf's nameservers is answered by a resolver that
// asks the pod's nameserver over TCP through Dial, and the machine's own
// resolver for names the cluster does not know (NXDOMAIN, SERVFAIL or
// REFUSED for a name outside the pod's search domains).
//
// # Loopback
//
// CMD's 127.0.0.1 and ::1 are its own. Run mirrors, while CMD runs, the
// machine's listening TCP ports on loopback (and on the wildcard address)
// into the namespace at the same numbers, and CMD's listening TCP ports on
// loopback or the wildcard address onto the machine's 127.0.0.1 (and ::1)
// at the same numbers; both are found with sock_diag every
// PollInterval. docs/run.md says what this does and its limits.
//
// Nothing of the machine changes: no route, resolv.conf, firewall rule or
// interface outside CMD's namespaces.
//
// # Use
//
// The binary calls MaybeInit first thing (cli/app.Run does). Then, for
// `tether run`:
//
//	if err := netns.Check(); err != nil {
//		return err // a user error: what to change, and that --network proxy works
//	}
//	status, err := netns.Run(context.WithoutCancel(ctx), netns.Config{
//		Argv: argv, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
//		Dial:       dialer.Dial, // out of the target pod
//		Cluster:    ranges,      // the Service and pod CIDRs
//		ResolvConf: podResolvConf,
//		Files:      files, // e.g. /var/run/secrets/kubernetes.io/serviceaccount -> DIR/...
//		Logger:     log,
//	})
//
// Run's context should not be one a SIGINT cancels: Ctrl-C already
// reaches CMD from the terminal, and the end of ctx sends CMD a SIGTERM.
package netns

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// InitArg is argv[1] of the hidden init that Run starts in the new
// namespaces; MaybeInit recognises it.
const InitArg = "__tether-netns-init"

// PollInterval is how often the loopback bridge looks for new listening
// ports on either side.
const PollInterval = 100 * time.Millisecond

// Config is what Run needs.
type Config struct {
	// Argv is CMD and its arguments; Argv[0] is looked up in Env's PATH.
	Argv []string
	// Env is CMD's environment; nil means Run's own.
	Env []string
	// Dir is CMD's working directory; empty means Run's own.
	Dir string
	// Stdin, Stdout and Stderr are CMD's; nil means /dev/null (Stdin) or
	// discarded (Stdout, Stderr). *os.File values are passed through.
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Dial carries a TCP connection to addr ("ip:port") out of the target
	// pod.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Cluster is where Dial goes: the Service and pod ranges. Everything
	// else leaves through the machine's own network.
	Cluster []netip.Prefix
	// ResolvConf is the pod's /etc/resolv.conf (nameservers, search,
	// ndots); CMD's /etc/resolv.conf says the same, bind-mounted in its
	// mount namespace.
	ResolvConf []byte
	// HostResolvConf is the machine's resolv.conf, asked for names the
	// cluster does not know; empty means /etc/resolv.conf.
	HostResolvConf []byte
	// Files maps a path in CMD's view to a local file or directory that is
	// bind-mounted read-only there (e.g.
	// /var/run/secrets/kubernetes.io/serviceaccount).
	Files map[string]string
	// Logger receives what happens to CMD's connections; nil discards.
	Logger *slog.Logger

	// hostDNS replaces HostResolvConf's nameservers ("ip:port"), for tests.
	hostDNS []string
	// initPath replaces this executable as the init, for tests.
	initPath string
}
