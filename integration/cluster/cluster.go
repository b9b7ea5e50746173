// Package cluster builds, starts and stops tether's local test cluster: a
// k3s built from its Go module (a server, and optionally a second node in
// namespaces of its own), whose images are all built on this machine and
// which never pulls from a registry.
//
// Everything the cluster writes lives under Config.Dir, except what the
// kernel and kubelet keep globally (mounts under /run/k3s and
// /var/lib/kubelet, the cni0 bridge, iptables rules); Down removes those.
package cluster

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
)

// Config describes the local cluster.
type Config struct {
	// Dir holds the binaries, images, state, logs and kubeconfig (.cluster/).
	Dir string
	// NodeName is the Kubernetes node's name.
	NodeName string
	// PodCIDR and ServiceCIDR are the cluster's address ranges; NodePodCIDR
	// is the node's share of PodCIDR, the range the CNI bridge hands out.
	PodCIDR, ServiceCIDR, NodePodCIDR netip.Prefix
	// APIPort is the API server's port.
	APIPort int
	// Nodes is how many nodes Up starts: 1 (the server) or 2 (plus a k3s
	// agent joined to it, node2.go). Down, Check and the image imports
	// see node 2 whenever it runs, whatever Nodes says.
	Nodes int
	// Node2Name and Node2PodCIDR are the second node's name and its share
	// of PodCIDR (the one the controller gives the second node to register).
	Node2Name    string
	Node2PodCIDR netip.Prefix
	// Progress receives one line per step and per long wait.
	Progress io.Writer
}

// DefaultConfig returns the Config every tether test expects, rooted at dir.
// A dir that is a symbolic link is resolved (worktrees can share one
// cluster): k3s and the host name its files by their real paths.
func DefaultConfig(dir string) Config {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return Config{
		Dir:          dir,
		NodeName:     "tether-node",
		PodCIDR:      netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR:  netip.MustParsePrefix("10.43.0.0/16"),
		NodePodCIDR:  netip.MustParsePrefix("10.42.0.0/24"),
		APIPort:      6443,
		Nodes:        1,
		Node2Name:    "tether-node-2",
		Node2PodCIDR: netip.MustParsePrefix("10.42.1.0/24"),
		Progress:     io.Discard,
	}
}

// Validate checks the Config without I/O.
func (c Config) Validate() error {
	var errs []error
	if !filepath.IsAbs(c.Dir) {
		errs = append(errs, fmt.Errorf("cluster dir %q must be an absolute path", c.Dir))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	}
	if !c.PodCIDR.Contains(c.NodePodCIDR.Addr()) {
		errs = append(errs, fmt.Errorf("node pod CIDR %s is not inside pod CIDR %s", c.NodePodCIDR, c.PodCIDR))
	}
	if c.PodCIDR.Overlaps(c.ServiceCIDR) {
		errs = append(errs, fmt.Errorf("pod CIDR %s overlaps service CIDR %s", c.PodCIDR, c.ServiceCIDR))
	}
	if c.Nodes < 1 || c.Nodes > 2 {
		errs = append(errs, fmt.Errorf("%d nodes: the local cluster has 1 or 2", c.Nodes))
	}
	if c.Nodes == 2 && (c.Node2Name == "" || c.Node2Name == c.NodeName) {
		errs = append(errs, fmt.Errorf("node 2's name %q is empty or the server's", c.Node2Name))
	}
	if c.Nodes == 2 && (!c.PodCIDR.Contains(c.Node2PodCIDR.Addr()) || c.Node2PodCIDR.Overlaps(c.NodePodCIDR)) {
		errs = append(errs, fmt.Errorf("node 2's pod CIDR %s is outside %s or overlaps the server's %s", c.Node2PodCIDR, c.PodCIDR, c.NodePodCIDR))
	}
	if c.APIPort <= 0 || c.APIPort > 65535 {
		errs = append(errs, fmt.Errorf("API port %d is out of range", c.APIPort))
	}
	return errors.Join(errs...)
}

// Paths of what the cluster keeps under Dir.
func (c Config) binDir() string         { return filepath.Join(c.Dir, "bin") }
func (c Config) k3sBin() string         { return filepath.Join(c.Dir, "bin", "k3s") }
func (c Config) shimBin() string        { return filepath.Join(c.Dir, "bin", "containerd-shim-runc-v2") }
func (c Config) imagesDir() string      { return filepath.Join(c.Dir, "images") }
func (c Config) dataDir() string        { return filepath.Join(c.Dir, "data") }
func (c Config) etcDir() string         { return filepath.Join(c.Dir, "etc") }
func (c Config) cniBinDir() string      { return filepath.Join(c.Dir, "cni", "bin") }
func (c Config) cniConfDir() string     { return filepath.Join(c.Dir, "cni", "net.d") }
func (c Config) cniIPAMDir() string     { return filepath.Join(c.Dir, "cni", "ipam") }
func (c Config) pidFile() string        { return filepath.Join(c.Dir, "k3s.pid") }
func (c Config) logFile() string        { return filepath.Join(c.Dir, "k3s.log") }
func (c Config) importStamp() string    { return filepath.Join(c.Dir, "images.imported") }
func (c Config) containerdSock() string { return "/run/k3s/containerd/containerd.sock" }

// KubeconfigPath is where the cluster's admin kubeconfig is written.
func (c Config) KubeconfigPath() string { return filepath.Join(c.Dir, "kubeconfig.yaml") }

func (c Config) progressf(format string, args ...any) {
	fmt.Fprintf(c.Progress, format+"\n", args...)
}
