package cluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// guardChain is the mangle-table chain that keeps cluster traffic off the
// machine's real network: a safety net under the CNI's own routing.
const guardChain = "TETHER-GUARD"

// installGuard drops every packet to or from the pod and service ranges that
// would leave through the egress interface.
func installGuard(ctx context.Context, cfg Config, egress string) error {
	if _, err := run(ctx, "iptables", "-w", "-t", "mangle", "-N", guardChain); err != nil {
		if _, err := run(ctx, "iptables", "-w", "-t", "mangle", "-F", guardChain); err != nil {
			return fmt.Errorf("reset %s: %w", guardChain, err)
		}
	}
	if _, err := run(ctx, "iptables", "-w", "-t", "mangle", "-C", "POSTROUTING", "-j", guardChain); err != nil {
		if _, err := run(ctx, "iptables", "-w", "-t", "mangle", "-I", "POSTROUTING", "1", "-j", guardChain); err != nil {
			return fmt.Errorf("hook %s into POSTROUTING: %w", guardChain, err)
		}
	}
	for _, cidr := range []string{cfg.PodCIDR.String(), cfg.ServiceCIDR.String()} {
		for _, dir := range []string{"-d", "-s"} {
			if _, err := run(ctx, "iptables", "-w", "-t", "mangle", "-A", guardChain, "-o", egress, dir, cidr, "-j", "DROP"); err != nil {
				return fmt.Errorf("guard rule %s %s: %w", dir, cidr, err)
			}
		}
	}
	return nil
}

// clusterRule reports whether an iptables-save line belongs to the cluster:
// kube-proxy's and the network policy controller's KUBE-* chains, the CNI
// plugins' CNI-* chains, tether's guard, and rules an integration test
// added (commented "tether-it: ...") and did not remove, its process killed.
func clusterRule(line string) bool {
	return strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") || strings.Contains(line, guardChain) ||
		strings.Contains(line, `"tether-it: `)
}

// iptablesFamilies are the save/restore pairs to clean; k3s may have used the
// nf_tables or the legacy backend, so both are checked.
var iptablesFamilies = [][2]string{
	{"iptables-save", "iptables-restore"},
	{"ip6tables-save", "ip6tables-restore"},
	{"iptables-legacy-save", "iptables-legacy-restore"},
	{"ip6tables-legacy-save", "ip6tables-legacy-restore"},
}

// removeClusterRules deletes every cluster rule and chain, leaving all other
// rules as they were.
func removeClusterRules(ctx context.Context) error {
	var errs []error
	for _, fam := range iptablesFamilies {
		if _, err := exec.LookPath(fam[0]); err != nil {
			continue
		}
		saved, err := exec.CommandContext(ctx, fam[0]).Output()
		if err != nil {
			continue // backend not usable here
		}
		kept, dropped := filterRules(string(saved))
		if dropped == 0 {
			continue
		}
		cmd := exec.CommandContext(ctx, fam[1], "-w")
		cmd.Stdin = strings.NewReader(kept)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", fam[1], err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// filterRules removes the cluster's lines from iptables-save output.
func filterRules(saved string) (kept string, dropped int) {
	var b strings.Builder
	for _, line := range strings.SplitAfter(saved, "\n") {
		if clusterRule(line) {
			dropped++
			continue
		}
		b.WriteString(line)
	}
	return b.String(), dropped
}

// leftoverRules returns the cluster rules still installed.
func leftoverRules(ctx context.Context) []string {
	var out []string
	for _, fam := range iptablesFamilies {
		saved, err := exec.CommandContext(ctx, fam[0]).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(saved), "\n") {
			if clusterRule(line) {
				out = append(out, fam[0]+": "+line)
			}
		}
	}
	return out
}

// removeClusterIPSets destroys the ipsets kube-router's policy controller made.
func removeClusterIPSets(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "ipset", "list", "-n").Output()
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(out)) {
		if strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "inet6:KUBE-") {
			_ = exec.CommandContext(ctx, "ipset", "destroy", name).Run()
		}
	}
}
