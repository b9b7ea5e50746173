package netns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	tunMTU      = 65520
	dialTimeout = 30 * time.Second
	udpIdle     = 60 * time.Second
	// dnsIdle: a resolver mostly sends one query (or an A and an AAAA)
	// per socket, so a DNS flow is dropped soon after its last query.
	dnsIdle = 5 * time.Second
	// maxQuery is the largest DNS query read over UDP (queries are a few
	// hundred bytes).
	maxQuery = 4096
	// maxInFlight bounds the handshakes waiting for their Dial.
	maxInFlight = 4096
)

// netstack terminates the TUN's packets: TCP and UDP from CMD become
// connections made by Run's process (through Dial for the cluster).
type netstack struct {
	ctx     context.Context
	s       *stack.Stack
	dial    func(ctx context.Context, addr string) (net.Conn, error)
	cluster []netip.Prefix
	dnsAddr map[netip.Addr]bool
	res     *resolver
	log     *slog.Logger

	warned sync.Map // netip.AddrPort -> struct{}: UDP to the cluster, logged once
}

func newNetstack(ctx context.Context, fd int, ns *netstack) (*netstack, error) {
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: tunMTU, RXChecksumOffload: true})
	if err != nil {
		return nil, fmt.Errorf("TUN endpoint: %w", err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	ns.ctx, ns.s = ctx, s
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: 1 << 20, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: 1 << 20, Max: 8 << 20}
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod)
	// No TIME_WAIT on our side: when the cluster's side closed first, CMD's
	// kernel may reuse the local port while the 4-tuple is still in
	// TIME_WAIT here, and gVisor hands such a SYN only to a listening
	// endpoint, which the forwarder is not: the SYN was dropped and CMD's
	// connect timed out (2 in 3,000 new connections of the bench). TIME_WAIT
	// guards against late duplicates of a lossy, reordering network; the TUN
	// is neither.
	tw := tcpip.TCPTimeWaitTimeoutOption(0)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw)

	tf := tcp.NewForwarder(s, 0, maxInFlight, ns.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, ns.handleUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	const nic = 1
	if err := s.CreateNICWithOptions(nic, ep, stack.NICOptions{Disabled: true}); err != nil {
		return nil, fmt.Errorf("create NIC: %s", err)
	}
	// Answer for every address: CMD's packets go to the whole world.
	if err := s.SetPromiscuousMode(nic, true); err != nil {
		return nil, fmt.Errorf("promiscuous: %s", err)
	}
	if err := s.SetSpoofing(nic, true); err != nil {
		return nil, fmt.Errorf("spoofing: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nic},
		{Destination: header.IPv6EmptySubnet, NIC: nic},
	})
	// Handlers and options are in place: let packets in.
	if err := s.EnableNIC(nic); err != nil {
		return nil, fmt.Errorf("enable NIC: %s", err)
	}
	return ns, nil
}

func (n *netstack) close() {
	n.s.Close()
	n.s.Wait()
}

func (n *netstack) toCluster(a netip.Addr) bool {
	if n.dnsAddr[a] {
		return true
	}
	for _, p := range n.cluster {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// handleTCP runs for each SYN: it dials first and completes the handshake
// only when the dial succeeded, else it resets (CMD sees "connection
// refused", not a hang).
func (n *netstack) handleTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst := addrPort(id.LocalAddress, id.LocalPort)
	ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
	var (
		out net.Conn
		err error
		via = "host"
	)
	if n.toCluster(dst.Addr()) {
		via = "pod"
		out, err = n.dial(ctx, dst.String())
	} else {
		var d net.Dialer
		out, err = d.DialContext(ctx, "tcp", dst.String())
	}
	cancel()
	if err != nil {
		n.log.Info("connection refused to CMD", "dst", dst, "via", via, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		out.Close()
		n.log.Warn("accept CMD's connection", "dst", dst, "err", terr)
		return
	}
	r.Complete(false)
	n.log.Debug("connection", "dst", dst, "via", via)
	splice(gonet.NewTCPConn(&wq, ep), out, func() {
		ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	})
}

func (n *netstack) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst := addrPort(id.LocalAddress, id.LocalPort)
	isDNS := dst.Port() == 53 && n.dnsAddr[dst.Addr()]
	if !isDNS && n.toCluster(dst.Addr()) {
		if _, seen := n.warned.LoadOrStore(dst, struct{}{}); !seen {
			n.log.Warn("UDP to a cluster address is not carried (only TCP and DNS are)", "dst", dst)
		}
		return false // port unreachable
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		return false
	}
	c := gonet.NewUDPConn(&wq, ep)
	if isDNS {
		go n.serveDNS(c)
	} else {
		go n.relayUDP(c, dst)
	}
	return true
}

// serveDNS answers the queries CMD sends from one socket until it is idle.
func (n *netstack) serveDNS(c *gonet.UDPConn) {
	defer c.Close()
	buf := make([]byte, maxQuery)
	for {
		_ = c.SetReadDeadline(time.Now().Add(dnsIdle))
		k, err := c.Read(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:k]...)
		go func() {
			resp := n.res.answerUDP(n.ctx, q)
			if resp != nil {
				_, _ = c.Write(resp)
			}
		}()
	}
}

// relayUDP carries one UDP flow through a socket of the machine.
func (n *netstack) relayUDP(c *gonet.UDPConn, dst netip.AddrPort) {
	defer c.Close()
	hc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		n.log.Info("UDP relay", "dst", dst, "err", err)
		return
	}
	defer hc.Close()
	done := make(chan struct{}, 2)
	pipe := func(from, to net.Conn) {
		buf := make([]byte, 65535)
		for {
			_ = from.SetReadDeadline(time.Now().Add(udpIdle))
			k, err := from.Read(buf)
			if err != nil {
				break
			}
			if _, err := to.Write(buf[:k]); err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(c, hc)
	go pipe(hc, c)
	<-done
}
