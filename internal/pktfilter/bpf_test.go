package pktfilter

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// frame serializes p as an Ethernet frame, as AF_PACKET on a pod's eth0
// delivers it.
func frame(t testing.TB, p Packet, fragmented bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ip gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	protoNum := map[Proto]layers.IPProtocol{TCP: layers.IPProtocolTCP, UDP: layers.IPProtocolUDP, ICMP: layers.IPProtocolICMPv4}
	if p.Src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), Protocol: protoNum[p.Proto]}
		if fragmented {
			v4.FragOffset = 100
		}
		ip, ls = v4, []gopacket.SerializableLayer{eth, v4}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		next := protoNum[p.Proto]
		if p.Proto == ICMP {
			next = layers.IPProtocolICMPv6
		}
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice(), NextHeader: next}
		ip, ls = v6, []gopacket.SerializableLayer{eth, v6}
	}
	switch p.Proto {
	case TCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.SrcPort), DstPort: layers.TCPPort(p.DstPort), SYN: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	case UDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.SrcPort), DstPort: layers.UDPPort(p.DstPort)}
		udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	case ICMP:
		if p.Src.Is4() {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
		} else {
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			icmp.SetNetworkLayerForChecksum(ip)
			ls = append(ls, icmp)
		}
	}
	ls = append(ls, gopacket.Payload("hello"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var testPackets = []Packet{web, dns, ping, v6,
	pkt("fd00::1", "fd00::53", UDP, 5353, 53),
	pkt("fd00::9", "fd00::1", ICMP, 0, 0),
	pkt("192.0.2.1", "10.42.0.9", TCP, 8080, 31000),
}

// compileAndRun runs filter's BPF program on every test packet and checks
// it agrees with the tree's own Match.
func compileAndRun(t testing.TB, filter string) {
	e, err := Parse(filter)
	if err != nil {
		return
	}
	prog, err := Compile(e, 65535)
	if err == ErrTooComplex {
		return
	}
	if err != nil {
		t.Fatalf("Compile(%q): %v", filter, err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatalf("Compile(%q) made an invalid program: %v", filter, err)
	}
	for _, p := range testPackets {
		n, err := vm.Run(frame(t, p, false))
		if err != nil {
			t.Fatalf("run %q: %v", filter, err)
		}
		if got, want := n > 0, e.Match(p); got != want {
			t.Fatalf("%q on %+v: kernel program says %v, the tree says %v", filter, p, got, want)
		}
	}
}

func TestCompileAgreesWithMatch(t *testing.T) {
	for _, f := range []string{
		"", "tcp", "udp", "icmp", "ip", "ip6", "port 53", "udp port 53", "tcp port 53", "dst port 8080", "src port 8080",
		"portrange 8000-8100", "host 10.42.0.9", "src 10.42.0.5 and not icmp", "dst host 10.42.0.5", "net 10.43.0.0/16",
		"not dst net 10.0.0.0/8", "tcp and (port 8080 or port 443)", "icmp || udp", "! tcp && ! udp", "ip and tcp",
		"host fd00::1", "net fd00::/64 and udp", "dst net fd00::50/124", "net 0.0.0.0/0", "src net 192.0.2.0/24 and src port 8080",
	} {
		t.Run(f, func(t *testing.T) { compileAndRun(t, f) })
	}
}

func TestFragmentsHaveNoPorts(t *testing.T) {
	e, _ := Parse("port 8080")
	prog, err := Compile(e, 65535)
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := bpf.NewVM(prog)
	if n, _ := vm.Run(frame(t, web, true)); n != 0 {
		t.Error("a non-first IPv4 fragment matched a port filter")
	}
}

// FuzzCompile: for any filter that parses, the kernel program and the tree
// agree on every test packet.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"tcp port 80", "not (src net 10.0.0.0/8 or dst host fd00::1)", "udp and portrange 50-60", "ip6 or icmp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { compileAndRun(t, s) })
}

func TestFromFrame(t *testing.T) {
	for _, p := range testPackets {
		if got := FromFrame(frame(t, p, false)); got != p {
			t.Errorf("FromFrame = %+v, want %+v", got, p)
		}
	}
}

// FuzzFromFrame: any bytes off the wire summarize without a panic.
func FuzzFromFrame(f *testing.F) {
	for _, p := range testPackets {
		f.Add(frame(f, p, false))
		f.Add(frame(f, p, true))
	}
	f.Fuzz(func(t *testing.T, b []byte) { FromFrame(b) })
}
