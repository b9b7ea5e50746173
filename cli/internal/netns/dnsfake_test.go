package netns

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func listenLocal(t testing.TB) net.Listener {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// zone answers A queries by name; other names are NXDOMAIN, other types
// of a known name have no records.
type zone map[string]netip.Addr

var (
	clusterZone = zone{"svc1.ns1.svc.cluster.local.": netip.MustParseAddr("10.222.0.5")}
	laptopZone  = zone{"laptop-only.example.": netip.MustParseAddr("192.0.2.7")}
)

func (z zone) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	a, known := z[strings.ToLower(question.Name.String())]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	if known && question.Type == dnsmessage.TypeA {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a.As4()})
	}
	out, _ := b.Finish()
	return out
}

// dnsServer serves z over TCP or UDP on loopback.
func dnsServer(t testing.TB, network string, z zone) string {
	if network == "udp" {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if resp := z.answer(buf[:n]); resp != nil {
					_, _ = pc.WriteTo(resp, from)
				}
			}
		}()
		return pc.LocalAddr().String()
	}
	l := listenLocal(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var mu sync.Mutex
				for {
					q, err := readMsg(c)
					if err != nil {
						return
					}
					go func() {
						if resp := z.answer(q); resp != nil {
							mu.Lock()
							_ = writeMsg(c, resp)
							mu.Unlock()
						}
					}()
				}
			}()
		}
	}()
	return l.Addr().String()
}
