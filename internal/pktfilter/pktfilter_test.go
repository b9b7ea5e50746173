package pktfilter

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func pkt(src, dst string, proto Proto, sport, dport uint16) Packet {
	return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, SrcPort: sport, DstPort: dport}
}

var (
	web  = pkt("10.42.0.5", "10.42.0.9", TCP, 40000, 8080)
	dns  = pkt("10.42.0.5", "10.43.0.10", UDP, 50000, 53)
	ping = pkt("10.42.0.5", "8.8.8.8", ICMP, 0, 0)
	v6   = pkt("fd00::1", "fd00::2", TCP, 1234, 443)
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter string
		want   map[string]bool // packet name -> matches
	}{
		{"", map[string]bool{"web": true, "dns": true, "ping": true, "v6": true}},
		{"tcp", map[string]bool{"web": true, "dns": false, "ping": false, "v6": true}},
		{"port 53", map[string]bool{"web": false, "dns": true, "ping": false}},
		{"udp port 53", map[string]bool{"dns": true, "web": false}},
		{"tcp port 53", map[string]bool{"dns": false}},
		{"dst port 8080", map[string]bool{"web": true}},
		{"src port 8080", map[string]bool{"web": false}},
		{"portrange 8000-8100", map[string]bool{"web": true, "dns": false}},
		{"host 10.42.0.9", map[string]bool{"web": true, "dns": false}},
		{"src 10.42.0.5 and not icmp", map[string]bool{"web": true, "dns": true, "ping": false}},
		{"dst host 10.42.0.5", map[string]bool{"web": false}},
		{"net 10.43.0.0/16", map[string]bool{"dns": true, "web": false}},
		{"not dst net 10.0.0.0/8", map[string]bool{"ping": true, "web": false}},
		{"tcp and (port 8080 or port 443)", map[string]bool{"web": true, "v6": true, "dns": false}},
		{"icmp || udp", map[string]bool{"ping": true, "dns": true, "web": false}},
		{"! tcp && ! udp", map[string]bool{"ping": true, "web": false, "dns": false}},
		{"ip6", map[string]bool{"v6": true, "web": false}},
		{"ip and tcp", map[string]bool{"web": true, "v6": false}},
		{"TCP AND PORT 8080", map[string]bool{"web": true}},
	}
	packets := map[string]Packet{"web": web, "dns": dns, "ping": ping, "v6": v6}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			e, err := Parse(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				if got := e.Match(packets[name]); got != want {
					t.Errorf("%q (%s) on %s = %v, want %v", tt.filter, e, name, got, want)
				}
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		filter, word, msg string
	}{
		{"tcp port eighty", "eighty", "port needs a number"},
		{"hots 10.0.0.1", "hots", "expected host, net, port"},
		{"host example.com", "example.com", "host needs an IP address"},
		{"net 10.0.0.0", "10.0.0.0", "net needs a CIDR"},
		{"portrange 90-80", "90-80", "portrange needs LOW-HIGH"},
		{"(tcp or udp", "", "expected ')'"},
		{"tcp udp", "udp", "expected and, or"},
		{"tcp and", "", "expected host"},
		{"icmp port 1", "port", "icmp has no ports"},
		{"port", "", "port needs a value"},
		{"src or dst host 1.2.3.4", "or", "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			_, err := Parse(tt.filter)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, want a SyntaxError", tt.filter, err)
			}
			if se.Word != tt.word || !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("error at %q saying %q; want at %q saying %q", se.Word, se.Msg, tt.word, tt.msg)
			}
			if tt.word != "" && tt.filter[se.Pos:se.Pos+len(tt.word)] != tt.word {
				t.Errorf("position %d does not point at %q", se.Pos, tt.word)
			}
		})
	}
}

// FuzzParse: any input either parses, and its String() form parses to a
// filter that matches the same packets, or fails with a SyntaxError whose
// position lies within the input. String() adds parentheses, so its form of
// a filter near the limits may be over them.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp port 80", "not (src net 10.0.0.0/8 or dst host ::1)", "udp and portrange 1-2", "((", "port 99999",
		strings.Repeat("(", MaxDepth) + "tcp" + strings.Repeat(")", MaxDepth), strings.Repeat("! ", MaxDepth+1) + "udp"} {
		f.Add(s)
	}
	packets := []Packet{web, dns, ping, v6}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Pos < 0 || se.Pos > len(s) {
				t.Fatalf("Parse(%q): %v", s, err)
			}
			return
		}
		again, err := Parse(e.String())
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("String() of %q is %q, which does not parse: %v", s, e.String(), err)
		}
		for _, p := range packets {
			if e.Match(p) != again.Match(p) {
				t.Fatalf("%q and its String() %q disagree on %+v", s, e.String(), p)
			}
		}
	})
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name, filter, msg string
	}{
		{"deep parentheses", strings.Repeat("(", 1000) + "tcp" + strings.Repeat(")", 1000), "nests deeper than"},
		{"deep not", strings.Repeat("not ", 1000) + "tcp", "nests deeper than"},
		{"deep !", strings.Repeat("!", 1<<22) + "tcp", "longer than"},
		{"long", strings.Repeat("tcp or ", 1<<19) + "tcp", "longer than"},
		{"one byte too long", strings.Repeat(" ", MaxLen-3) + "tcp!", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.filter)
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) || !strings.Contains(se.Msg, tt.msg) {
				t.Fatalf("Parse: %v, want a SyntaxError saying %q", err, tt.msg)
			}
			if len(err.Error()) > 400 {
				t.Errorf("the message quotes too much of the filter: %d bytes", len(err.Error()))
			}
		})
	}
	// Nesting up to the limit parses.
	ok := strings.Repeat("(", MaxDepth-1) + "tcp" + strings.Repeat(")", MaxDepth-1)
	if _, err := Parse(ok); err != nil {
		t.Errorf("%d levels: %v", MaxDepth-1, err)
	}
}
