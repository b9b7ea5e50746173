package capture

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tetherkube/tether/agent"
)

// Summary is one line for a packet: time, source -> destination, protocol,
// TCP flags, length, and a DNS question or answer or an HTTP request line.
func Summary(p agent.CapturedPacket) string {
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	ts := p.Timestamp.Format("15:04:05.000000")
	var src, dst, proto, extra string
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
	case *layers.IPv6:
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
	default:
		if eth, ok := pkt.LinkLayer().(*layers.Ethernet); ok {
			return fmt.Sprintf("%s %s > %s %s length %d", ts, eth.SrcMAC, eth.DstMAC, eth.EthernetType, p.Length)
		}
		return fmt.Sprintf("%s unknown length %d", ts, p.Length)
	}
	switch t := pkt.TransportLayer().(type) {
	case *layers.TCP:
		src, dst, proto = fmt.Sprintf("%s:%d", src, t.SrcPort), fmt.Sprintf("%s:%d", dst, t.DstPort), "TCP "+tcpFlags(t)
		if line, ok := httpLine(t.Payload); ok {
			extra = " " + line
		}
	case *layers.UDP:
		src, dst, proto = fmt.Sprintf("%s:%d", src, t.SrcPort), fmt.Sprintf("%s:%d", dst, t.DstPort), "UDP"
		if d, ok := pkt.Layer(layers.LayerTypeDNS).(*layers.DNS); ok && len(d.Questions) > 0 {
			q := d.Questions[0]
			if d.QR {
				extra = fmt.Sprintf(" DNS answer %s %s %s (%d records)", q.Type, q.Name, d.ResponseCode, len(d.Answers))
			} else {
				extra = fmt.Sprintf(" DNS query %s %s", q.Type, q.Name)
			}
		}
	default:
		proto = "IP"
		if pkt.Layer(layers.LayerTypeICMPv4) != nil || pkt.Layer(layers.LayerTypeICMPv6) != nil {
			proto = "ICMP"
		}
	}
	return fmt.Sprintf("%s %s > %s %s length %d%s", ts, src, dst, proto, p.Length, extra)
}

func tcpFlags(t *layers.TCP) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{t.SYN, "S"}, {t.FIN, "F"}, {t.RST, "R"}, {t.PSH, "P"}, {t.ACK, "."}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return "[" + strings.Join(f, "") + "]"
}

// httpLine returns the request or status line when payload starts one.
func httpLine(payload []byte) (string, bool) {
	line, _, _ := bytes.Cut(payload, []byte("\r\n"))
	s := string(line)
	for _, m := range []string{"GET ", "POST ", "PUT ", "DELETE ", "PATCH ", "HEAD ", "OPTIONS ", "HTTP/1."} {
		if strings.HasPrefix(s, m) && len(s) < 2048 {
			return s, true
		}
	}
	return "", false
}
