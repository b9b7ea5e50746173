package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// FailedOfferMemory is how long a pod whose direct offer failed is not
// offered it again under PathAuto: every new link to it (each `tether run`)
// would otherwise wait for the offer's timeout before falling back.
const FailedOfferMemory = time.Minute

// PathChooser opens the direct path of the daemon's links as --path asks,
// with the daemon run's identity, and remembers the pods whose offer failed.
// One per daemon; safe for concurrent use.
type PathChooser struct {
	// Identity is the daemon's key and certificate for direct paths.
	Identity *tunnel.Identity
	// Timeout bounds each offer; zero is DefaultDirectTimeout.
	Timeout time.Duration
	// ListenAddr, when set, is listened on instead of the route's source
	// address (tests on loopback).
	ListenAddr netip.Addr
	// Logger says why a link goes over the port-forward. Nil discards.
	Logger *slog.Logger

	mu     sync.Mutex
	failed map[netip.Addr]time.Time
}

// Use opens l's direct path when path asks for it. PathPortForward offers
// nothing. PathAuto tries, unless an offer to the same pod failed within
// FailedOfferMemory, and when the pod cannot reach this machine logs why
// and goes on over the port-forward. PathDirect always tries, and fails
// with a user error that says why and what to do instead.
func (c *PathChooser) Use(ctx context.Context, l *Link, path Path, podIP netip.Addr) error {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == PathPortForward {
		return nil
	}
	if path == PathAuto && c.failedRecently(podIP) {
		log.Info("no direct path: the last offer to this pod failed less than a minute ago; the port-forward carries the connections",
			"pod", podIP.String())
		return nil
	}
	err := l.OfferDirect(ctx, DirectOffer{PodIP: podIP, Identity: c.Identity, Timeout: c.Timeout, ListenAddr: c.ListenAddr})
	c.remember(podIP, err == nil)
	switch {
	case err == nil:
		return nil
	case path == PathDirect:
		return errdefs.User("--path direct: the pod (%s) cannot open a connection to this machine (%v). "+
			"The direct path needs the pod network to reach the laptop (a local cluster such as k3s, kind or minikube, or a VPN into the pod network); "+
			"a host firewall or a NetworkPolicy on the pod's egress blocks it. `--path port-forward` goes through the API server instead", podIP, err)
	default:
		log.Info("no direct path; the port-forward carries the connections", "pod", podIP.String(), "why", err)
		return nil
	}
}

func (c *PathChooser) failedRecently(ip netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.failed[ip]
	return ok && time.Since(at) < FailedOfferMemory
}

func (c *PathChooser) remember(ip netip.Addr, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		delete(c.failed, ip)
		return
	}
	if c.failed == nil {
		c.failed = map[netip.Addr]time.Time{}
	}
	for old, at := range c.failed { // bounded: forget what is past
		if time.Since(at) >= FailedOfferMemory {
			delete(c.failed, old)
		}
	}
	c.failed[ip] = time.Now()
}
