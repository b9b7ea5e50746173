package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// agentCgroup reads the CPU time and memory of the agent container of
// the one orders pod from its cgroup on this machine (the local cluster's
// node): cgroup v1's cpuacct and memory controllers, or v2.
type agentCgroup struct {
	cpuFile, memFile, peakFile string
	v2                         bool
}

// findAgentCgroup finds the tether-agent container of the first pod
// labelled app=orders in ns.
func findAgentCgroup(ctx context.Context, cs kubernetes.Interface, ns string) (*agentCgroup, error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name != "tether-agent" || c.ContainerID == "" {
				continue
			}
			_, id, _ := strings.Cut(c.ContainerID, "://")
			pod := "pod" + string(p.UID)
			for _, qos := range []string{"", "burstable", "besteffort"} {
				v1 := filepath.Join("/sys/fs/cgroup/cpuacct/kubepods", qos, pod, id)
				if _, err := os.Stat(filepath.Join(v1, "cpuacct.usage")); err == nil {
					mem := filepath.Join("/sys/fs/cgroup/memory/kubepods", qos, pod, id)
					return &agentCgroup{cpuFile: filepath.Join(v1, "cpuacct.usage"), memFile: filepath.Join(mem, "memory.usage_in_bytes"),
						peakFile: filepath.Join(mem, "memory.max_usage_in_bytes")}, nil
				}
				v2 := filepath.Join("/sys/fs/cgroup/kubepods", qos, pod, id)
				if _, err := os.Stat(filepath.Join(v2, "cpu.stat")); err == nil {
					return &agentCgroup{cpuFile: filepath.Join(v2, "cpu.stat"), memFile: filepath.Join(v2, "memory.current"),
						peakFile: filepath.Join(v2, "memory.peak"), v2: true}, nil
				}
			}
			return nil, fmt.Errorf("no cgroup of container %s of pod %s on this machine", id, p.Name)
		}
	}
	return nil, fmt.Errorf("no running tether-agent container in the orders pods of %s", ns)
}

// cpuNanos is the container's CPU time so far.
func (g *agentCgroup) cpuNanos() (int64, error) {
	b, err := os.ReadFile(g.cpuFile)
	if err != nil {
		return 0, err
	}
	if !g.v2 {
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return us * 1000, err
		}
	}
	return 0, fmt.Errorf("%s has no usage_usec", g.cpuFile)
}

// memory is the container's memory now and its peak (0 when the kernel
// keeps none).
func (g *agentCgroup) memory() (now, peak int64) {
	read := func(f string) int64 {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	return read(g.memFile), read(g.peakFile)
}
