package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestRotateLog: a start keeps the earlier runs' logs, the last as .1,
// and drops the oldest beyond the count kept.
func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "k3s.log")
	for run := 1; run <= 5; run++ {
		if err := rotateLog(log, 3); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(log, []byte(fmt.Sprintf("run %d\n", run)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"k3s.log": "run 5\n", "k3s.log.1": "run 4\n", "k3s.log.2": "run 3\n", "k3s.log.3": "run 2\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "k3s.log.4")); err == nil {
		t.Error("k3s.log.4 kept: more than 3 earlier logs")
	}
}

// TestValidateNodes: one or two nodes, node 2 with a name and a pod range
// of its own inside the cluster's.
func TestValidateNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"one node", func(c *Config) {}, true},
		{"two nodes", func(c *Config) { c.Nodes = 2 }, true},
		{"no node", func(c *Config) { c.Nodes = 0 }, false},
		{"three nodes", func(c *Config) { c.Nodes = 3 }, false},
		{"node 2 named as the server", func(c *Config) { c.Nodes, c.Node2Name = 2, c.NodeName }, false},
		{"node 2's range is the server's", func(c *Config) { c.Nodes, c.Node2PodCIDR = 2, c.NodePodCIDR }, false},
		{"node 2's range outside the cluster's", func(c *Config) { c.Nodes, c.Node2PodCIDR = 2, netip.MustParsePrefix("10.44.1.0/24") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig("/tmp/cluster")
			tc.edit(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
