package httprec

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tetherkube/tether/recording"
)

// Ring keeps the most recent exchanges within a byte budget. Bodies being
// captured reserve their bytes as they grow, so the stored exchanges plus
// everything in flight never pass the budget: the oldest exchanges go
// first, and when in-flight bodies alone fill it, bodies are truncated.
type Ring struct {
	mu       sync.Mutex
	budget   int
	used     int      // stored exchanges
	inflight int      // reserved by bodies being captured
	items    []stored // oldest first
	nextID   uint64
	stats    stats
	scratch  sync.Pool // *[]byte: where add encodes
}

type stats struct {
	conns, exchanges, evicted, notHTTP, malformed, upgraded, limited atomic.Uint64
}

// Stats are the ring's counters.
type Stats struct {
	// Connections watched, exchanges recorded, and exchanges evicted to
	// stay within the budget.
	Connections, Exchanges, Evicted uint64
	// Connections let go unrecorded: not HTTP, HTTP that stopped parsing,
	// and upgraded to another protocol (WebSocket, ...).
	NotHTTP, Malformed, Upgraded uint64
	// Limited counts connections whose recording stopped at a bound (their
	// share of the budget, the budget, a head, trailer or header list too
	// large); they were still forwarded.
	Limited uint64
	// Bytes stored and reserved by bodies in flight, and the budget.
	StoredBytes, InflightBytes, BudgetBytes int
	// Held is the count of exchanges in the ring.
	Held int
}

// NewRing returns a ring holding at most budget bytes.
func NewRing(budget int) *Ring {
	return &Ring{budget: budget}
}

// Stats reports the ring's counters.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{
		Connections: r.stats.conns.Load(), Exchanges: r.stats.exchanges.Load(), Evicted: r.stats.evicted.Load(),
		NotHTTP: r.stats.notHTTP.Load(), Malformed: r.stats.malformed.Load(), Upgraded: r.stats.upgraded.Load(),
		Limited:     r.stats.limited.Load(),
		StoredBytes: r.used, InflightBytes: r.inflight, BudgetBytes: r.budget, Held: len(r.items),
	}
}

// reserve makes room for n more in-flight bytes, evicting the oldest
// exchanges; false when the in-flight bodies alone would pass the budget.
func (r *Ring) reserve(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight+n > r.budget {
		return false
	}
	r.inflight += n
	r.evictLocked()
	return true
}

func (r *Ring) unreserve(n int) {
	r.mu.Lock()
	r.inflight -= n
	r.mu.Unlock()
}

// add stores e, whose bodies had reserved bytes, under the next id.
func (r *Ring) add(e *recording.Exchange, reserved int) {
	buf, _ := r.scratch.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = encodeExchange((*buf)[:0], e)
	s := stored{data: append(make([]byte, 0, len(*buf)), *buf...)}
	if cap(*buf) <= 1<<20 { // a large body's buffer is not worth keeping
		r.scratch.Put(buf)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight -= reserved
	r.nextID++
	s.id = r.nextID
	r.items = append(r.items, s)
	r.used += s.cost()
	r.stats.exchanges.Add(1)
	r.evictLocked()
}

// evictLocked drops the oldest exchanges until everything fits.
func (r *Ring) evictLocked() {
	drop := 0
	for r.used+r.inflight > r.budget && drop < len(r.items) {
		r.used -= r.items[drop].cost()
		r.items[drop] = stored{}
		drop++
	}
	if drop > 0 {
		r.items = r.items[drop:]
		r.stats.evicted.Add(uint64(drop))
	}
}

// Exchanges returns the held exchanges that keep returns true for, oldest
// first, each decoded afresh: the caller owns them. A full ring decoded
// at once takes several times its budget: to read many, use Held.
func (r *Ring) Exchanges(keep func(*recording.Exchange) bool) ([]*recording.Exchange, error) {
	var out []*recording.Exchange
	err := r.Held().Each(keep, func(e *recording.Exchange) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Held is the exchanges a ring held at one moment, still encoded.
type Held []stored

// Held returns the exchanges the ring holds now; recording goes on.
func (r *Ring) Held() Held {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items) // the encoded bytes are shared, never written again
}

// Each decodes the exchanges of h one at a time, oldest first, and calls
// fn with each that keep returns true for (nil: every one), until fn
// returns an error. fn owns what it gets; what it lets go is garbage at
// once, so reading the whole ring holds one exchange at a time.
func (h Held) Each(keep func(*recording.Exchange) bool, fn func(*recording.Exchange) error) error {
	for _, s := range h {
		e, err := decodeExchange(s)
		if err != nil {
			return fmt.Errorf("exchange %d: %w", s.id, err)
		}
		if keep == nil || keep(e) {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Last returns the end of h that holds its last n exchanges that keep
// returns true for (nil: every one), or all of h when it has fewer. It
// decodes from the newest back, one at a time, and only as far as it
// must: with no keep, nothing.
func (h Held) Last(keep func(*recording.Exchange) bool, n int) (Held, error) {
	if keep == nil {
		return h[max(0, len(h)-n):], nil
	}
	found := 0
	for i := len(h) - 1; i >= 0 && found < n; i-- {
		e, err := decodeExchange(h[i])
		if err != nil {
			return nil, fmt.Errorf("exchange %d: %w", h[i].id, err)
		}
		if keep(e) {
			if found++; found == n {
				return h[i:], nil
			}
		}
	}
	return h, nil
}

// bodyBuf captures a body up to a cap, charging its connection's meter as
// it grows.
type bodyBuf struct {
	mem       *meter
	cap       int
	data      []byte
	size      int64
	truncated bool
	done      bool // moved into its exchange: later bytes are not kept
	reserved  int
	// expect is the body's length when its head said (Content-Length),
	// within the cap: the buffer's first size, so a small body takes no
	// more than it needs.
	expect int
}

// expectLen notes that the body is n bytes long.
func (b *bodyBuf) expectLen(n int64) {
	if b != nil && n > 0 {
		b.expect = int(min(n, int64(b.cap)))
	}
}

func newBody(mem *meter, cap int) *bodyBuf { return &bodyBuf{mem: mem, cap: cap} }

// reserveStep is how many bytes a body reserves at a time.
const reserveStep = 16 << 10

func (b *bodyBuf) write(p []byte) {
	if b == nil || b.done {
		return
	}
	b.size += int64(len(p))
	if b.truncated {
		return
	}
	room := b.cap - len(b.data)
	if len(p) > room {
		p, b.truncated = p[:room], true
	}
	need := len(b.data) + len(p)
	if need > b.reserved {
		// Bytes are reserved in steps that double, so that a large body
		// takes few trips to the ring's lock; short of that, just what
		// is needed.
		step := min(max(need-b.reserved, reserveStep, b.reserved), b.cap-b.reserved)
		if !b.mem.charge(step) {
			step = need - b.reserved
			if !b.mem.charge(step) {
				b.truncated = true
				return
			}
		}
		b.reserved += step
	}
	if need > cap(b.data) {
		// The buffer grows by doubling too, never past what is reserved.
		first := 512
		if b.expect >= need {
			first = b.expect
		}
		grown := make([]byte, len(b.data), min(max(need, 2*cap(b.data), first), b.reserved))
		copy(grown, b.data)
		b.data = grown
	}
	b.data = append(b.data, p...)
}

// finish moves the body into m.
func (b *bodyBuf) finish(m *recording.Message) {
	if b == nil {
		return
	}
	b.done = true
	m.Body, m.BodySize, m.Truncated = b.data, b.size, b.truncated
}

// release gives back the reservation of a body that will not be stored.
func (b *bodyBuf) release() {
	if b == nil || b.reserved == 0 {
		return
	}
	b.mem.refund(b.reserved)
	b.reserved = 0
}

// held is what the body has charged.
func (b *bodyBuf) held() int {
	if b == nil {
		return 0
	}
	return b.reserved
}
