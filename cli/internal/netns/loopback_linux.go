package netns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bridge joins the machine's loopback and CMD's at the same port numbers,
// both ways, for as long as CMD runs. Every PollInterval it lists the
// listening TCP sockets of both network namespaces: a port the machine
// listens on (loopback or wildcard) gets a listener at the same number on
// CMD's loopback that connects to the machine's; a port CMD listens on
// gets a listener on the machine's loopback that connects into CMD's
// namespace through a socket the init created there. Both sides are read
// with sock_diag (listenDiag). A port already taken
// on the other side is left alone, exactly as it would be if CMD ran on
// the machine.
type bridge struct {
	log      *slog.Logger
	host, ns listenDiag
	socket   func(family int) (*os.File, error) // a socket in CMD's namespace

	mu        sync.Mutex
	toNS      map[portKey]net.Listener // in CMD's namespace, for the machine's ports
	toHost    map[portKey]net.Listener // on the machine, for CMD's ports
	conflicts map[portKey]bool         // CMD's ports the machine had taken (logged once)
}

func newBridge(log *slog.Logger, host, ns listenDiag, socket func(int) (*os.File, error)) *bridge {
	return &bridge{log: log, host: host, ns: ns, socket: socket, toNS: map[portKey]net.Listener{}, toHost: map[portKey]net.Listener{}, conflicts: map[portKey]bool{}}
}

func loopbackAddr(k portKey) string {
	if k.v6 {
		return "[::1]:" + strconv.Itoa(int(k.port))
	}
	return "127.0.0.1:" + strconv.Itoa(int(k.port))
}

// run syncs until ctx ends, then closes every listener it opened.
func (b *bridge) run(ctx context.Context) {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.mu.Lock()
			for _, l := range b.toNS {
				l.Close()
			}
			for _, l := range b.toHost {
				l.Close()
			}
			b.mu.Unlock()
			return
		case <-t.C:
			b.sync()
		}
	}
}

// sync brings the listeners in line with both namespaces' listening ports.
func (b *bridge) sync() {
	hostPorts, err := b.host.ports()
	if err != nil {
		b.log.Debug("list the machine's listening ports", "err", err)
		return
	}
	nsPorts, err := b.ns.ports()
	if err != nil {
		b.log.Debug("list CMD's listening ports", "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.toHost {
		delete(hostPorts, k)
	}
	for k := range b.toNS {
		delete(nsPorts, k)
	}
	// The machine's ports, into CMD's namespace.
	for k, l := range b.toNS {
		if !hostPorts[k] {
			l.Close()
			delete(b.toNS, k)
		}
	}
	for k := range hostPorts {
		if _, ok := b.toNS[k]; ok || nsPorts[k] {
			continue
		}
		l, err := b.listenNS(k)
		if err != nil {
			b.log.Debug("mirror a port of the machine into CMD's namespace", "port", k.port, "v6", k.v6, "err", err)
			continue
		}
		b.toNS[k] = l
		go b.serve(l, func() (net.Conn, error) { return net.DialTimeout("tcp", loopbackAddr(k), dialTimeout) })
	}
	// CMD's ports, onto the machine.
	for k, l := range b.toHost {
		if !nsPorts[k] {
			l.Close()
			delete(b.toHost, k)
		}
	}
	for k := range nsPorts {
		if _, ok := b.toHost[k]; ok {
			continue
		}
		if hostPorts[k] {
			if !b.conflicts[k] {
				b.conflicts[k] = true
				b.log.Warn("CMD listens on a port the machine already uses: not reachable from the machine's loopback", "port", k.port)
			}
			continue
		}
		l, err := net.Listen(map[bool]string{false: "tcp4", true: "tcp6"}[k.v6], loopbackAddr(k))
		if err != nil {
			b.log.Debug("open CMD's port on the machine", "port", k.port, "v6", k.v6, "err", err)
			continue
		}
		b.toHost[k] = l
		go b.serve(l, func() (net.Conn, error) { return b.dialNS(k) })
	}
}

func (b *bridge) serve(l net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := dial()
			if err != nil {
				c.Close()
				return
			}
			splice(c, out, nil)
		}()
	}
}

func sockaddr(k portKey) unix.Sockaddr {
	if k.v6 {
		return &unix.SockaddrInet6{Port: int(k.port), Addr: netip.IPv6Loopback().As16()}
	}
	return &unix.SockaddrInet4{Port: int(k.port), Addr: [4]byte{127, 0, 0, 1}}
}

func family(k portKey) int {
	if k.v6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// listenNS opens a listener on CMD's loopback.
func (b *bridge) listenNS(k portKey) (net.Listener, error) {
	f, err := b.socket(family(k))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd := int(f.Fd())
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if k.v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, sockaddr(k)); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 512); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return net.FileListener(f)
}

// dialNS connects to CMD's loopback.
func (b *bridge) dialNS(k portKey) (net.Conn, error) {
	f, err := b.socket(family(k))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Connect(int(f.Fd()), sockaddr(k)); err != nil {
		return nil, fmt.Errorf("connect to CMD's port %d: %w", k.port, err)
	}
	return net.FileConn(f)
}
