package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/tunnel"
)

// The hop rows say what the two relays of an intercepted request cost on
// this machine with nothing of tether's tunnel in them, so that the direct
// path's ratio to a pod -> pod request can be split into the hops every
// design with an agent in the pod and a process on the laptop pays and
// what tether's tunnel (TLS, yamux, its goroutines) adds:
//
//   - the agent's hop: pod -> agent -> app with nothing intercepted (the
//     agent joins the caller to the app, recording as it does while
//     intercepting);
//   - the laptop's hop: pod -> a plain relay on this machine -> the
//     laptop's server. The relay is this binary started with -relay, a
//     process of its own as the daemon is: it accepts on the address the
//     pod reaches this machine by and joins each connection to the
//     laptop's server with tunnel.Join (splice on Linux), no TLS, no yamux.
//
// Both relays alone cost about agent hop + laptop hop - pod -> pod.

// relayMain is the child process's whole life (bench -relay LISTEN,TARGET):
// it prints the address it listens on, then relays until killed.
func relayMain(spec string) error {
	listen, target, ok := strings.Cut(spec, ",")
	if !ok {
		return fmt.Errorf("-relay %q: want LISTEN,TARGET", spec)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Println(l.Addr().String())
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			u, err := net.Dial("tcp", target)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench -relay:", err)
				c.Close()
				return
			}
			tunnel.Join(c, u)
		}()
	}
}

// startRelay starts the plain relay on the address this machine's route
// to podIP leaves by, towards target; it returns the relay's address.
func startRelay(ctx context.Context, podIP, target string) (string, func(), error) {
	ip, err := netip.ParseAddr(podIP)
	if err != nil {
		return "", nil, fmt.Errorf("pod IP %q: %w", podIP, err)
	}
	src, err := tunnel.RouteSource(ip)
	if err != nil {
		return "", nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, self, "-relay", netip.AddrPortFrom(src, 0).String()+","+target)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return "", nil, err
	}
	stop := func() { cancel(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the relay did not start: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// agentListenPort is the port the agent of pod takes the Service's
// connections on (its --forward LISTEN:APP).
func agentListenPort(pod *corev1.Pod) (int, error) {
	for _, c := range pod.Spec.Containers {
		if c.Name != "tether-agent" {
			continue
		}
		args := append(append([]string(nil), c.Command...), c.Args...)
		for i, a := range args {
			v, ok := strings.CutPrefix(a, "--forward=")
			if a == "--forward" && i+1 < len(args) {
				v, ok = args[i+1], true
			}
			if !ok {
				continue
			}
			listen, _, _ := strings.Cut(v, ":")
			return strconv.Atoi(listen)
		}
	}
	return 0, errors.New("the agent container has no --forward")
}

// podLatency measures only the latency of sequential keep-alive requests
// from the client pod to base.
func podLatency(ctx context.Context, rc *rest.Config, o options, client, base string) (row, error) {
	out, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "latency", base+"/orders/7", strconv.Itoa(o.requests))
	if err != nil {
		return row{}, fmt.Errorf("latency from a pod to %s: %w: %s", base, err, out)
	}
	var r row
	r.p50, r.p99 = parseLatency(out)
	if r.p50 == 0 {
		return row{}, fmt.Errorf("latency from a pod to %s: no figures in %q", base, out)
	}
	return r, nil
}
