package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// StartTimeout bounds how long Up waits for a started cluster to be healthy.
const StartTimeout = 5 * time.Minute

// Up starts the cluster, or reuses it when it already runs and is healthy,
// and returns once the node and CoreDNS are Ready.
func Up(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.k3sBin()); err != nil {
		return fmt.Errorf("k3s is not built (run `make cluster-bins`): %w", err)
	}
	if pid := readPID(cfg.pidFile()); processAlive(pid, cfg.k3sBin()) {
		cfg.progressf("k3s already running (pid %d); checking health", pid)
		if readPID(cfg.node2PIDFile()) != 0 && !node2Running(cfg) {
			// Left to the health check, it would wait for a node that
			// cannot come back; upNodes starts it again if asked.
			cfg.progressf("WARNING: node 2 died (its log: %s); clearing what it left", cfg.node2Log())
			cleanupNode2(ctx, cfg)
		}
		if err := waitHealthy(ctx, cfg, pid, time.Time{}, time.Time{}, nil); err != nil {
			return err
		}
		if err := upNodes(ctx, cfg); err != nil {
			return err
		}
		if err := importChangedImages(ctx, cfg); err != nil {
			return err
		}
		if err := writeManifests(cfg); err != nil {
			return err
		}
		cfg.progressf("cluster ready (reused)\nKUBECONFIG=%s", cfg.KubeconfigPath())
		return nil
	}
	if pid := readPID(cfg.pidFile()); pid != 0 {
		// `make cluster-down` removes the pid file: one left behind is a
		// cluster that died (or a machine that restarted) while it should
		// have been running. Say so loudly: the tests that were running
		// on it failed for that reason, and its log tells why.
		cfg.progressf("WARNING: the local cluster that should be running (k3s pid %d) is dead: nothing stopped it with `make cluster-down`.\n"+
			"WARNING: its log is kept as %s; starting a new cluster, whose state (namespaces, objects) starts empty.", pid, cfg.logFile()+".1")
	}
	if err := portFree(cfg.APIPort); err != nil {
		return err
	}
	// A cluster that died (or a machine that rebooted) leaves mounts, the
	// bridge and rules behind; clear them so this start is clean. A node 2
	// that outlived its server goes too.
	stopNode2(cfg)
	if err := cleanupHost(ctx, cfg); err != nil {
		return fmt.Errorf("clear what a previous cluster left: %w", err)
	}

	egress, nodeIP, err := egressInterface()
	if err != nil {
		return err
	}
	if err := writeNodeFiles(cfg, nodeIP); err != nil {
		return err
	}
	if err := stageAirgapImages(cfg); err != nil {
		return err
	}
	if err := installGuard(ctx, cfg, egress); err != nil {
		return err
	}
	cfg.progressf("egress guard on %s: traffic of %s and %s never leaves the machine", egress, cfg.PodCIDR, cfg.ServiceCIDR)

	start := time.Now()
	cmd, err := startK3s(cfg, false)
	if err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	cfg.progressf("k3s started (pid %d), log %s", cmd.Process.Pid, cfg.logFile())
	if err := waitHealthy(ctx, cfg, cmd.Process.Pid, start, start, exited); err != nil {
		return err
	}
	if err := upNodes(ctx, cfg); err != nil {
		return err
	}
	if err := writeImportStamp(cfg); err != nil {
		return err
	}
	cfg.progressf("cluster ready in %s\nKUBECONFIG=%s", time.Since(start).Round(100*time.Millisecond), cfg.KubeconfigPath())
	return nil
}

// upNodes gives a running server the nodes cfg asks for: node 2 is
// started when Nodes is 2 and it does not run; when Nodes is 1, node 2 is
// stopped when it runs (its pods with it) and its Node object removed, so
// the cluster has one node.
func upNodes(ctx context.Context, cfg Config) error {
	if cfg.Nodes == 2 {
		_, nodeIP, err := egressInterface()
		if err != nil {
			return err
		}
		return upNode2(ctx, cfg, nodeIP)
	}
	if node2Running(cfg) {
		cfg.progressf("one node asked for: stopping node 2 and its pods")
		stopNode2(cfg)
	}
	cleanupNode2(ctx, cfg)
	return forgetNode2(ctx, cfg)
}

func portFree(port int) error {
	lis, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("port %d is in use, so k3s cannot serve its API there: another cluster may run on this machine "+
			"(`ss -ltnp 'sport = :%d'` shows who); stop it first", port, port)
	}
	return lis.Close()
}

// keptLogs is how many earlier runs' k3s logs a start keeps (k3s.log.1 is
// the last run's).
const keptLogs = 3

// rotateLog moves path to path.1, path.1 to path.2, ..., keeping keep.
func rotateLog(path string, keep int) error {
	for i := keep; i >= 1; i-- {
		from := path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", path, i-1)
		}
		if err := os.Rename(from, fmt.Sprintf("%s.%d", path, i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// startK3s starts the k3s server on cfg's state. A new run's log starts a
// new file (the earlier ones rotated); a restart (again) goes on in the
// same one.
func startK3s(cfg Config, again bool) (*exec.Cmd, error) {
	mode := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if !again {
		if err := rotateLog(cfg.logFile(), keptLogs); err != nil {
			return nil, fmt.Errorf("keep the previous k3s log: %w", err)
		}
		mode = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	}
	logf, err := os.OpenFile(cfg.logFile(), mode, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"server",
		"--data-dir", cfg.dataDir(),
		"--write-kubeconfig", cfg.KubeconfigPath(),
		"--write-kubeconfig-mode", "0600",
		"--https-listen-port", strconv.Itoa(cfg.APIPort),
		"--node-name", cfg.NodeName,
		"--disable", "traefik,servicelb,metrics-server,local-storage",
		"--disable-helm-controller",
		"--flannel-backend", "none",
		"--cluster-cidr", cfg.PodCIDR.String(),
		"--service-cidr", cfg.ServiceCIDR.String(),
		"--pause-image", PauseImage,
		"--resolv-conf", filepath.Join(cfg.etcDir(), "resolv.conf"),
		"--private-registry", filepath.Join(cfg.etcDir(), "registries.yaml"),
		"--disable-default-registry-endpoint",
	}
	cmd := exec.Command(cfg.k3sBin(), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(),
		"PATH="+cfg.binDir()+":"+cfg.cniBinDir()+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	// Its own session: k3s outlives the command that started it and gets no
	// signal meant for that command's terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start k3s: %w", err)
	}
	if err := os.WriteFile(cfg.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	return cmd, nil
}

// waitHealthy waits until Check reports the cluster healthy, printing what it
// waits for every few seconds. Only readiness reached after since
// (dnsSince for CoreDNS) counts; exited, when set, reports k3s's exit.
func waitHealthy(ctx context.Context, cfg Config, pid int, since, dnsSince time.Time, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	start := time.Now()
	lastReport := time.Time{}
	for {
		st := check(ctx, cfg, since, dnsSince)
		if st.Healthy() {
			return nil
		}
		if !processAlive(pid, cfg.k3sBin()) {
			select {
			case err := <-exited:
				return fmt.Errorf("k3s exited (%v) before the cluster was ready; last log lines:\n%s", err, logTail(cfg, 30))
			default:
				if exited == nil {
					return fmt.Errorf("k3s (pid %d) is gone; last log lines:\n%s", pid, logTail(cfg, 30))
				}
			}
		}
		if time.Since(lastReport) >= 5*time.Second {
			cfg.progressf("waiting for %s (%s)", st.Waiting(), time.Since(start).Round(time.Second))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("cluster not ready after %s: still waiting for %s; last log lines:\n%s",
					StartTimeout, st.Waiting(), logTail(cfg, 30))
			}
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("k3s exited (%v) before the cluster was ready; last log lines:\n%s", err, logTail(cfg, 30))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func logTail(cfg Config, n int) string { return tail(cfg.logFile(), n) }
