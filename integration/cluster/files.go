package cluster

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// containerdTemplate is k3s's containerd config for this setup, with two
// changes: restrict_oom_score_adj (root on these VMs lacks CAP_SYS_RESOURCE,
// so without it every sandbox fails with "can't get final child's PID from
// pipe: EOF") and CNI paths inside the cluster folder.
const containerdTemplate = `version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "{{ .NodeConfig.Containerd.Opt }}"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = {{ .NodeConfig.SELinux }}
  enable_unprivileged_ports = {{ .EnableUnprivileged }}
  enable_unprivileged_icmp = {{ .EnableUnprivileged }}
  device_ownership_from_security_context = {{ .NonrootDevices }}
  restrict_oom_score_adj = true
  sandbox_image = "{{ .NodeConfig.AgentConfig.PauseImage }}"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "{{ .NodeConfig.AgentConfig.Snapshotter }}"
  disable_snapshot_annotations = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "%s"
  conf_dir = "%s"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = {{ .SystemdCgroup }}

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{{ .NodeConfig.Containerd.Registry }}"
`

// cniConfig is a bridge network for the node's pod range; flannel's plugin
// cannot be had here, Debian's bridge, host-local and portmap can.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "tether-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// registriesYAML mirrors every registry to a closed loopback port: together
// with --disable-default-registry-endpoint, nothing is ever pulled.
const registriesYAML = `mirrors:
  "*":
    endpoint: ["http://127.0.0.1:1"]
`

// writeNodeFiles writes the configuration k3s reads at start.
func writeNodeFiles(cfg Config, nodeIP netip.Addr) error {
	for _, d := range []string{cfg.etcDir(), cfg.cniBinDir(), cfg.cniConfDir(), cfg.cniIPAMDir(),
		filepath.Join(cfg.dataDir(), "agent", "etc", "containerd"), filepath.Join(cfg.dataDir(), "agent", "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	plugins, err := filepath.Glob("/usr/lib/cni/*")
	if err != nil || len(plugins) == 0 {
		return fmt.Errorf("no CNI plugins in /usr/lib/cni: run `make deps` (Debian package containernetworking-plugins)")
	}
	for _, p := range plugins {
		link := filepath.Join(cfg.cniBinDir(), filepath.Base(p))
		_ = os.Remove(link)
		if err := os.Symlink(p, link); err != nil {
			return err
		}
	}
	files := map[string]string{
		filepath.Join(cfg.dataDir(), "agent", "etc", "containerd", "config.toml.tmpl"): fmt.Sprintf(containerdTemplate, cfg.cniBinDir(), cfg.cniConfDir()),
		filepath.Join(cfg.cniConfDir(), "10-tether-bridge.conflist"):                   fmt.Sprintf(cniConfig, cfg.cniIPAMDir(), cfg.NodePodCIDR.String()),
		filepath.Join(cfg.etcDir(), "registries.yaml"):                                 registriesYAML,
		// No upstream DNS can be reached: CoreDNS forwards to the node itself,
		// where nxdns answers every name NXDOMAIN at once.
		filepath.Join(cfg.etcDir(), "resolv.conf"): "nameserver " + nodeIP.String() + "\n",
	}
	if err := writeManifests(cfg); err != nil {
		return err
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// stageAirgapImages links every image tarball into k3s's airgap folder, which
// k3s imports into containerd at start.
func stageAirgapImages(cfg Config) error {
	dst := filepath.Join(cfg.dataDir(), "agent", "images")
	for _, im := range Images() {
		src := filepath.Join(cfg.imagesDir(), im.File)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("image %s missing (run `make images`): %w", im.Ref, err)
		}
		target := filepath.Join(dst, im.File)
		_ = os.Remove(target)
		if err := os.Link(src, target); err != nil {
			return fmt.Errorf("stage %s: %w", im.File, err)
		}
	}
	return nil
}

// writeManifests puts the harness's own objects where k3s applies them, at
// start and while it runs (a reused cluster gets what a newer harness adds).
func writeManifests(cfg Config) error {
	dir := filepath.Join(cfg.dataDir(), "server", "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tether-nxdns.yaml"), []byte(nxdnsManifest), 0o644)
}

// nxdnsManifest runs nxdns on the node's address (hostNetwork), where
// CoreDNS forwards the names outside the cluster.
const nxdnsManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: tether-nxdns
  namespace: kube-system
  labels: {app: tether-nxdns}
spec:
  selector:
    matchLabels: {app: tether-nxdns}
  template:
    metadata:
      labels: {app: tether-nxdns}
    spec:
      hostNetwork: true
      dnsPolicy: Default
      priorityClassName: system-node-critical
      tolerations: [{operator: Exists}]
      containers:
      - name: nxdns
        image: ` + NXDNSImage + `
        imagePullPolicy: Never
        env:
        - name: HOST_IP
          valueFrom: {fieldRef: {fieldPath: status.hostIP}}
        securityContext:
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        resources:
          requests: {cpu: 5m, memory: 8Mi}
          limits: {memory: 32Mi}
`
