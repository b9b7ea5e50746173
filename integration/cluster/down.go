package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Down stops the cluster this Config started (by PID; node 2 first when it
// runs), the container shims it spawned, and removes its mounts, bridge,
// node 2's namespace, veth and cgroups, ipsets and iptables rules. With
// wipe it also deletes the cluster's state, so the next Up starts fresh.
func Down(ctx context.Context, cfg Config, wipe bool) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	stopNode2(cfg)
	stopK3s(cfg)
	_ = os.Remove(cfg.pidFile())
	if err := cleanupHost(ctx, cfg); err != nil {
		return err
	}
	if wipe {
		cfg.progressf("wiping cluster state")
		for _, p := range []string{cfg.dataDir(), cfg.KubeconfigPath(), cfg.importStamp(), cfg.cniIPAMDir(), cfg.node2Dir(), "/var/lib/kubelet", "/run/k3s"} {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("wipe %s: %w", p, err)
			}
		}
	}
	if left := Leftovers(ctx, cfg); len(left) > 0 {
		return fmt.Errorf("the cluster left this behind:\n  %s", strings.Join(left, "\n  "))
	}
	cfg.progressf("cluster stopped; no process, mount, bridge or rule of it remains")
	return nil
}

// stopK3s stops the k3s process this Config started (SIGTERM, then SIGKILL
// after 30 s), when it runs. The pods' containers go on running: their
// shims outlive k3s.
func stopK3s(cfg Config) { stopK3sProcess(cfg, cfg.pidFile(), "k3s") }

// stopK3sProcess stops the k3s process (the server or node 2's agent)
// whose pid file is pidFile, when it runs: SIGTERM, then SIGKILL after 30 s.
func stopK3sProcess(cfg Config, pidFile, name string) {
	pid := readPID(pidFile)
	if !processAlive(pid, cfg.k3sBin()) {
		return
	}
	cfg.progressf("stopping %s (pid %d)", name, pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid, cfg.k3sBin()) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(pid, cfg.k3sBin()) {
		cfg.progressf("%s did not stop within 30s; killing it", name)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for processAlive(pid, cfg.k3sBin()) {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// cleanupHost removes what a stopped (or crashed) cluster leaves on the host.
func cleanupHost(ctx context.Context, cfg Config) error {
	// Shims outlive k3s (they are reparented to init); each holds containers.
	for _, pid := range processesRunning(cfg.shimBin()) {
		tree := append([]int{pid}, descendants(pid)...)
		for _, p := range tree {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(processesRunning(cfg.shimBin())) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Node 2's namespaces, veth and cgroups, now that its shims are gone.
	cleanupNode2(ctx, cfg)
	var errs []error
	for _, mp := range mountsUnder(mountRoots(cfg)...) {
		if err := unmount(mp); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	netns, _ := filepath.Glob("/run/netns/cni-*")
	for _, ns := range netns {
		_ = os.Remove(ns)
	}
	if _, err := net.InterfaceByName("cni0"); err == nil {
		if _, err := run(ctx, "ip", "link", "delete", "cni0"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeClusterRules(ctx); err != nil {
		errs = append(errs, err)
	}
	removeClusterIPSets(ctx)
	return errors.Join(errs...)
}

func mountRoots(cfg Config) []string {
	return []string{cfg.dataDir(), cfg.node2Netns(), "/run/k3s", "/var/lib/kubelet", "/run/netns/cni-"}
}

// Leftovers lists what of the cluster is still on the host: processes,
// mounts, the bridge, iptables rules.
func Leftovers(ctx context.Context, cfg Config) []string {
	var left []string
	for _, pid := range processesRunning(cfg.k3sBin()) {
		left = append(left, fmt.Sprintf("k3s process %d", pid))
	}
	for _, pid := range processesRunning(cfg.shimBin()) {
		left = append(left, fmt.Sprintf("shim process %d", pid))
	}
	for _, mp := range mountsUnder(mountRoots(cfg)...) {
		left = append(left, "mount "+mp)
	}
	if _, err := net.InterfaceByName("cni0"); err == nil {
		left = append(left, "bridge cni0")
	}
	left = append(left, node2Leftovers()...)
	left = append(left, leftoverRules(ctx)...)
	return left
}
