package runcmd

import (
	"context"
	"net/netip"

	"github.com/tetherkube/tether/cli/internal/netns"
)

// InNamespace is the namespace mode: p runs in namespaces of its own
// (cli/internal/netns) whose TCP to the cluster's ranges and DNS go out of
// the run's pod through the daemon's dial socket.
func InNamespace(ctx context.Context, sess *Session, p Process) (int, error) {
	var cluster []netip.Prefix
	for _, s := range append(append([]string(nil), sess.Info.ServiceCIDRs...), sess.Info.PodCIDRs...) {
		if pr, err := netip.ParsePrefix(s); err == nil {
			cluster = append(cluster, pr)
		}
	}
	return netns.Run(ctx, netns.Config{
		Argv: p.Args, Env: p.Env, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr,
		Dial: sess.Dial, Cluster: cluster, ResolvConf: sess.Info.ResolvConfRaw, Files: p.Mounts,
	})
}

// CheckNamespace says why the namespace mode cannot run on this machine,
// and how to fix it, or nil.
func CheckNamespace() error { return netns.Check() }
