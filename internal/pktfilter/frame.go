package pktfilter

import (
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FromFrame summarizes an Ethernet frame for Match. A frame that is not
// IPv4 or IPv6 yields a Packet with no addresses, which only address-free
// filters (such as "not tcp") match.
func FromFrame(frame []byte) Packet {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var p Packet
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		p.Src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		p.Dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		if ip.FragOffset != 0 {
			return withProto(p, ip.Protocol) // later fragments carry no ports
		}
	case *layers.IPv6:
		p.Src, _ = netip.AddrFromSlice(ip.SrcIP)
		p.Dst, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return p
	}
	switch t := pkt.TransportLayer().(type) {
	case *layers.TCP:
		p.Proto, p.SrcPort, p.DstPort = TCP, uint16(t.SrcPort), uint16(t.DstPort)
	case *layers.UDP:
		p.Proto, p.SrcPort, p.DstPort = UDP, uint16(t.SrcPort), uint16(t.DstPort)
	default:
		if pkt.Layer(layers.LayerTypeICMPv4) != nil || pkt.Layer(layers.LayerTypeICMPv6) != nil {
			p.Proto = ICMP
		}
	}
	return p
}

func withProto(p Packet, proto layers.IPProtocol) Packet {
	switch proto {
	case layers.IPProtocolTCP:
		p.Proto = TCP
	case layers.IPProtocolUDP:
		p.Proto = UDP
	case layers.IPProtocolICMPv4:
		p.Proto = ICMP
	}
	return p
}
