package tap

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sink records what a connection delivered, in order.
type sink struct {
	log    []string
	closed bool
}

func (s *sink) FromClient(p []byte) { s.log = append(s.log, "c:"+string(p)) }
func (s *sink) FromServer(p []byte) { s.log = append(s.log, "s:"+string(p)) }
func (s *sink) Close()              { s.closed = true }

var (
	client = netip.MustParseAddrPort("10.42.0.9:40000")
	app    = netip.MustParseAddrPort("10.42.0.7:8080")
	t0     = time.Unix(1700000000, 0)
)

func newTest() (*assembler, map[flowKey]*sink) {
	sinks := map[flowKey]*sink{}
	a := newAssembler(func(s netip.AddrPort) (int, bool) { return 17000, s == app },
		func(c, s netip.AddrPort, as int) Sink {
			k := &sink{}
			sinks[flowKey{c, s}] = k
			return k
		})
	return a, sinks
}

// handshake opens client->app with initial sequence numbers 100 (client)
// and 500 (app): the first data byte of each is 101 and 501.
func handshake(a *assembler) {
	a.segment(Segment{Src: client, Dst: app, Seq: 100, SYN: true}, t0)
	a.segment(Segment{Src: app, Dst: client, Seq: 500, SYN: true, ACK: true}, t0)
}

func c(seq uint32, p string) Segment {
	return Segment{Src: client, Dst: app, Seq: seq, ACK: true, Payload: []byte(p)}
}
func s(seq uint32, p string) Segment {
	return Segment{Src: app, Dst: client, Seq: seq, ACK: true, Payload: []byte(p)}
}

func TestAssemble(t *testing.T) {
	fin := func(g Segment) Segment { g.FIN = true; return g }
	for _, tc := range []struct {
		name   string
		segs   []Segment
		want   []string
		closed bool
		stats  FlowStats
	}{
		{name: "in order, both FINs end it",
			segs: []Segment{c(101, "GET / "), c(107, "HTTP/1.1"), s(501, "HTTP/1.1 200"), fin(c(115, "")), fin(s(513, ""))},
			want: []string{"c:GET / ", "c:HTTP/1.1", "s:HTTP/1.1 200"}, closed: true, stats: FlowStats{Conns: 1}},
		{name: "out of order is put back in order",
			segs: []Segment{c(107, "HTTP/1.1"), c(101, "GET / "), s(501, "ok")},
			want: []string{"c:GET / ", "c:HTTP/1.1", "s:ok"}, stats: FlowStats{Conns: 1}},
		{name: "a retransmission, whole or overlapping, is delivered once",
			segs: []Segment{c(101, "GET / "), c(101, "GET / "), c(104, " / HTTP"), c(109, "TP/1.1")},
			want: []string{"c:GET / ", "c:HTTP", "c:/1.1"}, stats: FlowStats{Conns: 1}},
		{name: "a FIN held early ends the direction after the data before it",
			segs: []Segment{fin(c(104, "")), c(101, "abc"), fin(s(501, "x"))},
			want: []string{"c:abc", "s:x"}, closed: true, stats: FlowStats{Conns: 1}},
		{name: "RST ends it",
			segs: []Segment{c(101, "GET"), {Src: app, Dst: client, Seq: 501, RST: true}},
			want: []string{"c:GET"}, closed: true, stats: FlowStats{Conns: 1}},
		{name: "sequence numbers wrap",
			segs: []Segment{
				{Src: client, Dst: app, Seq: 0xfffffffe, SYN: true},
				{Src: app, Dst: client, Seq: 7, SYN: true, ACK: true},
				c(0xffffffff, "ab"), c(1, "cd")},
			want: []string{"c:ab", "c:cd"}, stats: FlowStats{Conns: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, sinks := newTest()
			if !strings.HasPrefix(tc.name, "sequence") {
				handshake(a)
			}
			for _, g := range tc.segs {
				a.segment(g, t0)
			}
			k := sinks[flowKey{client, app}]
			if k == nil {
				t.Fatal("no connection opened")
			}
			if diff := cmp.Diff(tc.want, k.log); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
			if k.closed != tc.closed {
				t.Errorf("closed %v, want %v", k.closed, tc.closed)
			}
			if diff := cmp.Diff(tc.stats, a.stats); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAssembleMidStream: a connection whose SYN was not seen is not
// recorded, counted once; a new connection from the same port later is.
func TestAssembleMidStream(t *testing.T) {
	a, sinks := newTest()
	a.segment(c(101, "GET /a"), t0)
	a.segment(s(501, "HTTP/1.1 200"), t0)
	a.segment(c(107, "GET /b"), t0)
	if len(sinks) != 0 || a.stats.MidStream != 1 {
		t.Fatalf("mid-stream: %d connections opened, stats %+v; want none opened, 1 counted", len(sinks), a.stats)
	}
	handshake(a)
	a.segment(c(101, "GET /c"), t0)
	if k := sinks[flowKey{client, app}]; k == nil || len(k.log) != 1 {
		t.Fatalf("the new connection was not recorded: %+v", k)
	}
}

// TestAssembleOutgoing: the app's own call to a server on the same port
// number is not taken for a caller's connection.
func TestAssembleOutgoing(t *testing.T) {
	a, sinks := newTest()
	other := netip.MustParseAddrPort("10.42.0.20:8080")
	a.segment(Segment{Src: netip.AddrPortFrom(app.Addr(), 50000), Dst: other, Seq: 1, SYN: true}, t0)
	a.segment(Segment{Src: other, Dst: netip.AddrPortFrom(app.Addr(), 50000), Seq: 9, SYN: true, ACK: true}, t0)
	if len(sinks) != 0 || a.stats != (FlowStats{}) {
		t.Errorf("the app's outgoing connection: %d opened, stats %+v; want none, nothing counted", len(sinks), a.stats)
	}
}

// TestAssembleGap: bytes that never come stop the connection's recording
// once the held bytes pass the bound, and its later packets are ignored.
func TestAssembleGap(t *testing.T) {
	a, sinks := newTest()
	a.maxHeld = 8
	handshake(a)
	a.segment(c(101, "GET"), t0)
	a.segment(c(110, "12345"), t0)  // 104-109 lost
	a.segment(c(115, "678901"), t0) // past the bound
	k := sinks[flowKey{client, app}]
	if !k.closed || a.stats.Gaps != 1 {
		t.Fatalf("closed %v, stats %+v; want closed after a gap", k.closed, a.stats)
	}
	a.segment(c(104, "abcdef"), t0)
	if diff := cmp.Diff([]string{"c:GET"}, k.log); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if len(a.flows) != 0 {
		t.Errorf("%d connections followed after the gap, want 0", len(a.flows))
	}
}

// TestAssembleSweep: a connection silent for the idle time ends (its FIN
// lost), and MaxFlows bounds the connections followed.
func TestAssembleSweep(t *testing.T) {
	a, sinks := newTest()
	a.maxFlows = 1
	handshake(a)
	other := netip.MustParseAddrPort("10.42.0.9:40001")
	a.segment(Segment{Src: other, Dst: app, Seq: 1, SYN: true}, t0)
	if a.stats.Over != 1 || len(sinks) != 1 {
		t.Fatalf("stats %+v, %d opened; want the second connection over the bound", a.stats, len(sinks))
	}
	a.sweep(t0.Add(a.idle - time.Second))
	if sinks[flowKey{client, app}].closed {
		t.Fatal("ended before its idle time")
	}
	a.sweep(t0.Add(a.idle))
	if !sinks[flowKey{client, app}].closed || len(a.flows) != 0 {
		t.Fatal("not ended after its idle time")
	}
}
