package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Restart stops the running k3s server and starts it again on the same
// state, as an operator restarting a control plane does: the pods go on
// running meanwhile (their shims outlive k3s), but the API server, the
// kubelet and kube-proxy are gone until it is back, and with them every
// port-forward and watch. It returns once the cluster is healthy again,
// with the moment the API server first answered after the start.
func Restart(ctx context.Context, cfg Config) (apiBack time.Time, err error) {
	if err := cfg.Validate(); err != nil {
		return time.Time{}, err
	}
	if pid := readPID(cfg.pidFile()); !processAlive(pid, cfg.k3sBin()) {
		return time.Time{}, errors.New("the local cluster is not running: start it with `make cluster-up`")
	}
	stopK3s(cfg)
	start := time.Now()
	cmd, err := startK3s(cfg, true)
	if err != nil {
		return time.Time{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	cfg.progressf("k3s restarted (pid %d), log %s", cmd.Process.Pid, cfg.logFile())
	for apiBack.IsZero() {
		if st := check(ctx, cfg, time.Time{}, time.Time{}); st.APIServer {
			apiBack = time.Now()
			break
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case err := <-exited:
			return time.Time{}, fmt.Errorf("k3s exited (%v) after the restart; last log lines:\n%s", err, logTail(cfg, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The node counts once its new kubelet reported; CoreDNS never stopped.
	if err := waitHealthy(ctx, cfg, cmd.Process.Pid, start, time.Time{}, exited); err != nil {
		return apiBack, err
	}
	return apiBack, nil
}
