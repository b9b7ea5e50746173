package dnswatch

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	client = netip.MustParseAddrPort("10.42.0.5:40000")
	server = netip.MustParseAddrPort("10.43.0.10:53")
	t0     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
)

// wire serializes and decodes a DNS message, as it would come off the wire.
func wire(t *testing.T, m *layers.DNS) *layers.DNS {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := m.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	var out layers.DNS
	if err := out.DecodeFromBytes(buf.Bytes(), gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	return &out
}

func query(t *testing.T, id uint16, name string) *layers.DNS {
	return wire(t, &layers.DNS{ID: id, RD: true, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}})
}

func answer(t *testing.T, id uint16, name string, rcode layers.DNSResponseCode, ips ...string) *layers.DNS {
	m := &layers.DNS{ID: id, QR: true, ResponseCode: rcode,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	for _, ip := range ips {
		m.Answers = append(m.Answers, layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 5, IP: net.ParseIP(ip).To4()})
	}
	return wire(t, m)
}

func TestPairsAndStorm(t *testing.T) {
	tr := NewTracker(2 * time.Second)
	names := []string{"api.example.com.shop.svc.cluster.local", "api.example.com.svc.cluster.local", "api.example.com.cluster.local", "api.example.com"}
	var got []*Exchange
	for i, n := range names {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		if ex := tr.Observe(at, client, server, query(t, uint16(100+i), n)); ex != nil {
			t.Fatalf("a query completed an exchange: %+v", ex)
		}
		rcode, ips := layers.DNSResponseCodeNXDomain, []string(nil)
		if i == len(names)-1 {
			rcode, ips = layers.DNSResponseCodeNoErr, []string{"192.0.2.7"}
		}
		got = append(got, tr.Observe(at.Add(3*time.Millisecond), server, client, answer(t, uint16(100+i), n, rcode, ips...)))
	}
	for i, ex := range got[:3] {
		if ex == nil || ex.Rcode != "Non-Existent Domain" || ex.Latency != 3*time.Millisecond || ex.Storm != 0 {
			t.Errorf("answer %d = %+v", i, ex)
		}
	}
	last := got[3]
	if last == nil || last.Rcode != "No Error" || len(last.Answers) != 1 || last.Answers[0] != "192.0.2.7" || last.Storm != 3 {
		t.Fatalf("final answer = %+v; want No Error, 192.0.2.7, after a storm of 3", last)
	}
	if s := last.String(); !strings.Contains(s, "after 3 NXDOMAIN from the search list") {
		t.Errorf("String() = %s", s)
	}
}

func TestUnansweredAndStrayAnswers(t *testing.T) {
	tr := NewTracker(time.Second)
	tr.Observe(t0, client, server, query(t, 7, "slow.shop.svc.cluster.local"))
	if ex := tr.Observe(t0, server, client, answer(t, 8, "other", layers.DNSResponseCodeNoErr)); ex != nil {
		t.Errorf("an answer without its query paired: %+v", ex)
	}
	if left := tr.Expire(t0.Add(500 * time.Millisecond)); len(left) != 0 {
		t.Errorf("expired too early: %+v", left)
	}
	left := tr.Expire(t0.Add(2 * time.Second))
	if len(left) != 1 || left[0].Answered || left[0].Name != "slow.shop.svc.cluster.local" {
		t.Errorf("Expire = %+v", left)
	}
	// The same id from another client port is another exchange.
	other := netip.MustParseAddrPort("10.42.0.5:40001")
	tr.Observe(t0, client, server, query(t, 9, "a"))
	tr.Observe(t0, other, server, query(t, 9, "b"))
	if ex := tr.Observe(t0.Add(time.Millisecond), server, other, answer(t, 9, "b", layers.DNSResponseCodeServFail)); ex == nil || ex.Name != "b" || ex.Rcode != "Server Failure" {
		t.Errorf("pairing by client port failed: %+v", ex)
	}
}
