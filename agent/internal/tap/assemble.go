// Package tap records an app's HTTP exchanges from a copy of the pod's
// packets instead of from the connections it relays: the Service points at
// the app, the callers' packets go straight to it, and the kernel hands the
// agent a copy of each (an AF_PACKET socket, agent/internal/capture). The
// callers pay nothing for the recording: no hop, no wake-up of the agent
// on their path. The price is CAP_NET_RAW for the agent, and a connection
// whose start the agent did not see, or whose bytes it lost, is not
// recorded (counted).
//
// This file puts each connection's two byte streams back together from
// its TCP segments; tap.go reads the packets and feeds the recorder.
package tap

import (
	"net/netip"
	"time"
)

// Sink receives one connection's bytes in order (httprec.Conn).
type Sink interface {
	FromClient(p []byte)
	FromServer(p []byte)
	Close()
}

// FlowStats counts what the assembler saw.
type FlowStats struct {
	// Conns is the connections whose start was seen and recorded.
	Conns uint64
	// MidStream is the connections already open when the tap started (or
	// whose opening was lost): not recorded.
	MidStream uint64
	// Gaps is the connections whose recording stopped because bytes were
	// missing (the capture dropped packets, or out-of-order data went
	// past its bound).
	Gaps uint64
	// Over is the connections not recorded because MaxFlows were open.
	Over uint64
}

// Segment is one TCP segment of a connection to the app, decoded.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq      uint32
	SYN, ACK bool
	FIN, RST bool
	Payload  []byte
}

// assembler follows the connections to the app's ports.
type assembler struct {
	// server reports whether addr is one of the app's (this pod's
	// address, an app port: not a server the app calls on the same port
	// number), and the port its exchanges are recorded under.
	server func(addr netip.AddrPort) (recordAs int, ok bool)
	// open starts recording a connection.
	open func(client, server netip.AddrPort, recordAs int) Sink
	// maxFlows bounds the connections followed; maxHeld bounds the
	// out-of-order bytes held per direction; idle ends a connection
	// silent that long (its FIN or RST lost).
	maxFlows, maxHeld int
	idle              time.Duration

	flows map[flowKey]*flow
	// midStream remembers connections seen mid-stream so each is
	// counted once; cleared with the idle sweep.
	midStream map[flowKey]time.Time
	stats     FlowStats
}

// flowKey names a connection by its client's and server's addresses.
type flowKey struct{ client, server netip.AddrPort }

type flow struct {
	sink        Sink
	client, srv half
	last        time.Time
}

// half is one direction's stream: the next sequence number expected and
// the segments that came before their turn.
type half struct {
	started bool
	next    uint32
	fin     bool // the FIN was delivered
	early   []early
	held    int
}

type early struct {
	seq  uint32
	data []byte
	fin  bool
}

func newAssembler(server func(netip.AddrPort) (int, bool), open func(client, server netip.AddrPort, recordAs int) Sink) *assembler {
	return &assembler{server: server, open: open, maxFlows: 16384, maxHeld: 1 << 20, idle: 2 * time.Minute,
		flows: map[flowKey]*flow{}, midStream: map[flowKey]time.Time{}}
}

// before reports whether sequence number a comes before b (RFC 1982).
func before(a, b uint32) bool { return int32(a-b) < 0 }

// segment takes one segment seen at now.
func (a *assembler) segment(s Segment, now time.Time) {
	var key flowKey
	fromClient := false
	recordAs, ok := a.server(s.Dst)
	if ok {
		key, fromClient = flowKey{client: s.Src, server: s.Dst}, true
	} else if _, ok = a.server(s.Src); ok {
		key = flowKey{client: s.Dst, server: s.Src}
	} else {
		return
	}
	f := a.flows[key]
	if f == nil {
		if !fromClient || !s.SYN || s.ACK {
			if _, seen := a.midStream[key]; !seen && !s.RST && len(s.Payload) > 0 {
				a.midStream[key] = now
				a.stats.MidStream++
			}
			return
		}
		if len(a.flows) >= a.maxFlows {
			a.stats.Over++
			return
		}
		delete(a.midStream, key)
		f = &flow{sink: a.open(key.client, key.server, recordAs)}
		f.client = half{started: true, next: s.Seq + 1}
		a.flows[key] = f
		a.stats.Conns++
		f.last = now
		return
	}
	f.last = now
	if s.RST {
		a.end(key, f)
		return
	}
	h := &f.srv
	if fromClient {
		h = &f.client
	}
	if s.SYN {
		if !fromClient && !h.started {
			*h = half{started: true, next: s.Seq + 1}
		}
		return // a retransmitted SYN carries nothing to deliver
	}
	if !h.started {
		// Data from the server before its SYN-ACK was seen: the
		// connection's start was lost.
		a.gap(key, f)
		return
	}
	if len(s.Payload) == 0 && !s.FIN {
		return
	}
	if !a.take(f, h, fromClient, early{seq: s.Seq, data: s.Payload, fin: s.FIN}) {
		a.gap(key, f)
		return
	}
	if f.client.fin && f.srv.fin {
		a.end(key, f)
	}
}

// take delivers what of e is next in h's stream, then the early segments
// that became next; it holds e when it came before its turn, and reports
// false when holding it would pass the bound.
func (a *assembler) take(f *flow, h *half, fromClient bool, e early) bool {
	if h.fin {
		return true // after the end: a retransmission
	}
	if before(h.next, e.seq) {
		if h.held+len(e.data) > a.maxHeld {
			return false
		}
		// Copied: the packet's buffer is the reader's.
		h.early = append(h.early, early{seq: e.seq, data: append([]byte(nil), e.data...), fin: e.fin})
		h.held += len(e.data)
		return true
	}
	a.deliver(f, h, fromClient, e)
	for progressed := true; progressed && len(h.early) > 0 && !h.fin; {
		progressed = false
		for i := 0; i < len(h.early); i++ {
			x := h.early[i]
			if before(h.next, x.seq) {
				continue
			}
			h.early = append(h.early[:i], h.early[i+1:]...)
			h.held -= len(x.data)
			a.deliver(f, h, fromClient, x)
			progressed = true
			i--
		}
	}
	return true
}

// deliver passes on the part of e at or after h.next (e starts at or
// before it).
func (a *assembler) deliver(f *flow, h *half, fromClient bool, e early) {
	skip := h.next - e.seq
	end := e.seq + uint32(len(e.data))
	if before(h.next, end) {
		p := e.data[skip:]
		h.next = end
		if fromClient {
			f.sink.FromClient(p)
		} else {
			f.sink.FromServer(p)
		}
	}
	if e.fin && !before(h.next, end) {
		h.fin = true
		h.next = end + 1
		h.early, h.held = nil, 0
	}
}

// gap stops recording a connection whose bytes went missing; the rest of
// its packets are taken for mid-stream ones and ignored.
func (a *assembler) gap(key flowKey, f *flow) {
	a.stats.Gaps++
	a.end(key, f)
	a.midStream[key] = f.last
}

func (a *assembler) end(key flowKey, f *flow) {
	f.sink.Close()
	delete(a.flows, key)
}

// sweep ends connections silent for the idle time, and forgets mid-stream
// ones as old.
func (a *assembler) sweep(now time.Time) {
	for key, f := range a.flows {
		if now.Sub(f.last) >= a.idle {
			a.end(key, f)
		}
	}
	for key, at := range a.midStream {
		if now.Sub(at) >= a.idle {
			delete(a.midStream, key)
		}
	}
}

// close ends every connection followed.
func (a *assembler) close() {
	for key, f := range a.flows {
		a.end(key, f)
	}
}
