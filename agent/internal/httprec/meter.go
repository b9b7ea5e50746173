package httprec

import (
	"errors"
	"net/http"

	"github.com/tetherkube/tether/recording"
)

// errLimit ends the recording of a connection that reached a bound: its
// share of the budget, the budget itself (in flight), or a bound on one
// message (a head, a trailer section, a decoded header list). The
// connection is still forwarded; only its recording stops.
var errLimit = errors.New("recording bound reached")

// meter counts what one connection's recording holds: partial heads and
// lines, answers held, exchanges waiting with their headers and bodies,
// HTTP/2 frames and HPACK tables. Each byte is charged both to the
// connection's share and to the ring's budget (as in-flight bytes), so the
// recorder as a whole holds no more than the budget, and one connection
// no more than its share. A connection's methods run under its lock.
type meter struct {
	ring  *Ring
	share int
	used  int
}

// charge takes n more bytes; false when the share or the budget is full.
func (m *meter) charge(n int) bool {
	if n <= 0 {
		return true
	}
	if m.used+n > m.share || !m.ring.reserve(n) {
		return false
	}
	m.used += n
	return true
}

// refund gives back n bytes that will not be stored.
func (m *meter) refund(n int) {
	if n <= 0 {
		return
	}
	m.used -= n
	m.ring.unreserve(n)
}

// settle hands n charged bytes over to an exchange the ring stores (the
// ring's add turns them from in flight into stored).
func (m *meter) settle(n int) { m.used -= n }

// defaultShare is a connection's share of a budget: an eighth, but at
// least 2 MiB (all of a smaller budget), so one connection cannot push
// every other out of the ring.
func defaultShare(budget int) int {
	return max(budget/8, min(budget, 2<<20))
}

// Costs of what the recorder holds, in bytes, rounded up from Go's memory
// layout: they are charged before the exchange is stored, when
// recording.Exchange.Size takes over.
const (
	// connCost: a Conn, its two parsers and what its HTTP/2 state needs
	// beyond the tables.
	connCost = 1024
	// pendingCost: a pending exchange, its recording.Exchange and two
	// body buffers, besides the messages' fields.
	pendingCost = 672
	// messageCost: a recording.Message and its header map (a map's first
	// group of slots is about 400 bytes), besides fields.
	messageCost = 512
	// fieldCost: one header value (map entry share, slice and string
	// headers), besides its bytes.
	fieldCost = 64
)

// costOf is what a message's head holds in memory.
func costOf(m *recording.Message) int {
	return messageCost + len(m.Method) + len(m.Target) + len(m.Host) + len(m.Reason) + headerCost(m.Header) + headerCost(m.Trailer)
}

func headerCost(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v) + fieldCost
		}
	}
	return n
}
