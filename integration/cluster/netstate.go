package cluster

import (
	"context"
	"os"
	"os/exec"
)

// NetState returns what each node's netfilter holds (iptables-save with
// counters, conntrack -L), and its routes and neighbours, keyed by a file
// name such as "node2-iptables.txt": for a test to keep at the moment a
// request hangs. A command that fails leaves its error as its text.
func NetState(ctx context.Context, cfg Config) map[string]string {
	in2 := []string{"nsenter", "--net=" + cfg.node2Netns(), "--"}
	cmds := map[string][]string{
		"host-iptables.txt":  {"iptables-save", "-c"},
		"host-conntrack.txt": {"conntrack", "-L"},
		"host-net.txt":       {"sh", "-c", "ip route; ip neigh"},
	}
	if _, err := os.Stat(cfg.node2PIDFile()); err == nil {
		cmds["node2-iptables.txt"] = append(in2, "iptables-save", "-c")
		cmds["node2-conntrack.txt"] = append(in2, "conntrack", "-L")
		cmds["node2-net.txt"] = append(in2, "sh", "-c", "ip route; ip neigh")
	}
	out := map[string]string{}
	for name, c := range cmds {
		b, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
		if err != nil {
			b = append(b, []byte("\n"+err.Error()+"\n")...)
		}
		out[name] = string(b)
	}
	return out
}
