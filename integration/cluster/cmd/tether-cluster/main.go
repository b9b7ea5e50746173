// Command tether-cluster builds the local cluster's images and starts,
// stops and checks the cluster: the Makefile's cluster-* targets call it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/tetherkube/tether/integration/cluster"
)

const usage = `usage: tether-cluster COMMAND [--dir DIR]

commands:
  images   build the image tarballs from the binaries in DIR/bin
  up       start the cluster, or reuse it when healthy; wait until ready
           (--nodes 2: with a second node, started on a running cluster too)
  down     stop the cluster and clean the host (--wipe also deletes its state)
  restart  stop k3s and start it again on the same state, the pods left
           running (what the fault suite does to the API server)
  status   print the cluster's health (-o json for scripts); exit 1 when unhealthy
  agent-image --ref REF --bin PATH
           pack PATH as the agent image REF and load it into the running
           cluster (a branch that changes the agent tests its own image)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tether-cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", ".cluster", "the cluster's folder")
	wipe := fs.Bool("wipe", false, "down: also delete the cluster's state")
	output := fs.String("o", "", "status: json for scripts")
	ref := fs.String("ref", "", "agent-image: the reference to give the agent image (e.g. docker.io/tetherkube/tether-agent:mybranch)")
	bin := fs.String("bin", "", "agent-image: the tether-agent binary to pack")
	nodes := fs.Int("nodes", 1, "up: 1, or 2 for a second node (a k3s agent in its own namespaces) joined to the server")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	cfg := cluster.DefaultConfig(abs)
	cfg.Progress = os.Stderr
	cfg.Nodes = *nodes
	switch args[0] {
	case "images":
		_, err := cluster.BuildImages(cfg)
		return err
	case "agent-image":
		if *ref == "" || *bin == "" {
			return errors.New("agent-image needs --ref and --bin")
		}
		return cluster.ImportAgentImage(ctx, cfg, *ref, *bin)
	case "up":
		if os.Geteuid() != 0 {
			return errors.New("the local cluster needs root (it mounts, creates a bridge and iptables rules): run as root")
		}
		return cluster.Up(ctx, cfg)
	case "restart":
		back, err := cluster.Restart(ctx, cfg)
		if err == nil {
			fmt.Fprintf(os.Stderr, "API server back at %s; cluster healthy\n", back.Format("15:04:05.000"))
		}
		return err
	case "down":
		return cluster.Down(ctx, cfg, *wipe)
	case "status":
		st := cluster.Check(ctx, cfg)
		if *output == "json" {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				return err
			}
		} else {
			fmt.Printf("running: %v (pid %d)\napi server: %v %s\nnode ready: %v\ncoredns ready: %v\n",
				st.Running, st.PID, st.APIServer, st.ServerVersion, st.NodeReady, st.CoreDNSReady)
			if st.Node2 {
				fmt.Printf("node 2 ready: %v %s\n", st.Node2Problem == "", st.Node2Problem)
			}
			fmt.Printf("KUBECONFIG=%s\n", st.Kubeconfig)
		}
		if !st.Healthy() {
			return fmt.Errorf("cluster not healthy: %s", st.Problem)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}
