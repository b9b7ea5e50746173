// Package httprec records the HTTP exchanges crossing the agent: it watches
// both byte streams of a connection (the agent copies them unchanged; this
// package only reads copies), parses HTTP/1.x and HTTP/2 cleartext, and
// keeps each exchange in a ring bounded in bytes. Traffic it cannot parse
// is let go unrecorded and counted, never broken.
package httprec

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherkube/tether/recording"
)

// Meta describes a connection.
type Meta struct {
	Pod         string
	Port        int
	Source      string
	Destination string // recording.ToApp or recording.ToLaptop
}

// Options bound and shape the recording.
type Options struct {
	// BodyCap is the most of each body kept; longer ones are truncated.
	BodyCap int
	// MaxHead bounds a message head, an HTTP/1 trailer section and an
	// HTTP/2 decoded header list (like SETTINGS_MAX_HEADER_LIST_SIZE); a
	// larger one ends recording of the connection.
	MaxHead int
	// ConnShare bounds what one connection's recording holds in flight
	// (exchanges waiting for their answers, their bodies, buffers); past
	// it the connection is no longer recorded. 0: an eighth of the
	// ring's budget, at least 2 MiB, and at least two capped bodies and
	// 1 MiB more, so a body the cap allows is kept whole (never more than
	// the budget).
	ConnShare int
	Redactor  recording.Redactor
	// Skip, when set, drops each exchange it is true for instead of
	// storing it (agent/internal/tap drops the kubelet's probes of the
	// app, which an agent in the Service's path never sees).
	Skip func(*recording.Exchange) bool
	// Observe, when set, sees each exchange kept, before redaction (the
	// agent's tap mirrors the requests it recorded from packets). The
	// exchange is the recording's, redacted once Observe returns: keep
	// copies, never its maps or slices.
	Observe func(*recording.Exchange)
}

// DefaultOptions: 1 MiB per body, 64 KiB per head, default redaction.
func DefaultOptions() Options {
	return Options{BodyCap: 1 << 20, MaxHead: 64 << 10}
}

// Conn watches one connection. FromClient and FromServer may be called
// from two goroutines; Close once both directions ended.
//
// Everything a Conn holds is charged to its meter, against its share and
// the ring's budget; reaching either stops recording the connection
// (Stats.Limited), never its forwarding. The work is linear in the bytes
// seen: heads and lines are searched once, and a read is not copied
// except for the part of a head or line that continues in the next read.
type Conn struct {
	mu   sync.Mutex
	meta Meta
	opts Options
	ring *Ring
	now  func() time.Time
	mem  meter
	// base is the charge for the Conn itself, given back at Close.
	base int
	// buffered is what the connection's buffers hold, as charged to mem.
	buffered int
	off      bool // not HTTP, upgraded, over a bound, or closed: bytes pass unrecorded
	// decided: the caller's first bytes told HTTP/1.x from HTTP/2; until
	// then sniffed counts the bytes that matched the HTTP/2 preface, and
	// answers are held.
	decided bool
	sniffed int
	h2      *h2conn
	// clientWriting counts the caller's writes in progress; held keeps
	// answers that came meanwhile.
	clientWriting atomic.Int32
	// counted: the caller sent a byte and the connection is in the
	// statistics.
	counted bool
	held    []byte
	sawHead bool // a message head parsed: later garbage is malformed HTTP
	// upgrading: a request asked to switch protocols; the caller's next
	// bytes may be the new protocol, so they are not parsed until the
	// answer says whether the switch happened.
	upgrading bool
	req       half
	resp      half
	// pending are the exchanges waiting for their responses, oldest
	// first; reqCur is the one whose request is being read.
	pending []*pending
	reqCur  *pending
}

// pending is an exchange whose request has been seen.
type pending struct {
	ex                        *recording.Exchange
	start, reqDone, respStart time.Time
	reqBody, respBody         *bodyBuf
	reqComplete, upgradeAsked bool
	method                    string
	// charged is what its heads and trailers hold (bodies count their own).
	charged int
}

// held is everything the exchange has charged.
func (p *pending) held() int { return p.charged + p.reqBody.held() + p.respBody.held() }

// NewConn starts watching a connection; exchanges go into ring.
func (r *Ring) NewConn(meta Meta, opts Options) *Conn {
	c := &Conn{meta: meta, opts: opts, ring: r, now: time.Now, mem: meter{ring: r, share: r.shareOf(opts)}}
	c.resp.response = true
	if !c.mem.charge(connCost) {
		// Not even the connection's own state fits: it passes unrecorded.
		c.off = true
		r.stats.limited.Add(1)
		return c
	}
	c.base = connCost
	return c
}

// shareOf is what one connection's recording may hold: opts.ConnShare,
// or by default an eighth of the budget, at least 2 MiB and at least
// two capped bodies and 1 MiB more (never more than the budget).
func (r *Ring) shareOf(opts Options) int {
	if opts.ConnShare > 0 {
		return opts.ConnShare
	}
	share := defaultShare(r.budget)
	if need := 2*opts.BodyCap + 1<<20; share < need {
		share = min(need, int(r.budget))
	}
	return share
}

// carried counts the connection in the ring's statistics once the caller
// sends a byte: a connection that closes without one (a readiness probe
// the agent answered, a health check's bare connect) is no traffic, even
// when a server that speaks first (HTTP/2's SETTINGS, a database's
// greeting) greeted it before the agent answered the probe.
func (c *Conn) carried(p []byte) {
	if len(p) > 0 && !c.counted {
		c.counted = true
		c.ring.stats.conns.Add(1)
	}
}

// FromClient observes bytes the caller sent.
func (c *Conn) FromClient(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fromClient(p)
	c.drainHeld()
}

// BeforeClientWrite and AfterClientWrite bracket the write of the
// caller's bytes upstream: between them, answers are held (copied) rather
// than parsed, so an answer is never parsed before its request, while
// nothing but a counter is touched before the bytes go on.
func (c *Conn) BeforeClientWrite() { c.clientWriting.Add(1) }

// AfterClientWrite parses the caller's bytes once they went on, then any
// answer held meanwhile.
func (c *Conn) AfterClientWrite(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fromClient(p)
	c.clientWriting.Add(-1)
	c.drainHeld()
}

func (c *Conn) fromClient(p []byte) {
	c.carried(p)
	if c.off || len(p) == 0 {
		return
	}
	if !c.decided {
		p = c.sniff(p)
	}
	var err error
	switch {
	case len(p) == 0: // undecided yet, or just the preface
	case c.h2 != nil:
		err = c.h2.feed(p, false)
	default:
		err = c.req.feed(p, (*conn1)(c), c.opts.MaxHead)
	}
	if err == nil {
		err = c.account()
	}
	c.stop(err)
}

// sniff reads the caller's first bytes: the HTTP/2 preface, however it is
// split across reads, makes the connection h2c; anything else, HTTP/1.x.
// It returns the bytes to parse (none while undecided).
func (c *Conn) sniff(p []byte) []byte {
	n := min(len(p), len(h2PrefaceText)-c.sniffed)
	if string(p[:n]) == h2PrefaceText[c.sniffed:c.sniffed+n] {
		c.sniffed += n
		if c.sniffed < len(h2PrefaceText) {
			return nil
		}
		c.decided, c.h2, c.sawHead = true, newH2Conn(c), true
		return p[n:]
	}
	c.decided = true
	if c.sniffed == 0 {
		return p
	}
	// The preface's start was a request's start ("PRI ..."): parse it too.
	return append([]byte(h2PrefaceText[:c.sniffed]), p...)
}

// FromServer observes bytes the app (or the laptop) answered.
func (c *Conn) FromServer(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || len(p) == 0 {
		return
	}
	if !c.decided || c.clientWriting.Load() > 0 {
		// A request being written may be what this answers, and an HTTP/2
		// server speaks first: parse after the caller's bytes.
		if len(c.held)+len(p) > maxHeld {
			c.stop(fmt.Errorf("%w: more than %d bytes of answers held", errLimit, maxHeld))
			return
		}
		c.held = append(c.held, p...)
		c.stop(c.account())
		return
	}
	c.drainHeld()
	c.fromServer(p)
}

// maxHeld bounds the answers held while a request is being written (a
// stream whose request never ends, with answers flowing, stops recording).
const maxHeld = 1 << 20

// drainHeld parses the answers held, once nothing holds them any more.
func (c *Conn) drainHeld() {
	if len(c.held) == 0 || !c.decided || c.clientWriting.Load() > 0 {
		return
	}
	held := c.held
	c.held = nil
	c.fromServer(held)
}

func (c *Conn) fromServer(p []byte) {
	if c.off || len(p) == 0 {
		return
	}
	var err error
	if c.h2 != nil {
		err = c.h2.feed(p, true)
	} else {
		err = c.resp.feed(p, (*conn1)(c), c.opts.MaxHead)
	}
	if err == nil {
		err = c.account()
	}
	c.stop(err)
}

// account charges the connection's buffers (partial heads and lines,
// answers held, HTTP/2 frames and header blocks, HPACK tables) as they
// grow, and gives back what they no longer hold.
func (c *Conn) account() error {
	n := cap(c.req.buf) + cap(c.resp.buf) + cap(c.held)
	if c.h2 != nil {
		n += c.h2.buffered()
	}
	switch d := n - c.buffered; {
	case d > 0 && !c.mem.charge(d):
		return fmt.Errorf("%w: %d bytes of buffers", errLimit, n)
	case d < 0:
		c.mem.refund(-d)
	}
	c.buffered = n
	return nil
}

// errUpgraded ends parsing after a protocol switch.
var errUpgraded = errors.New("upgraded")

// stop ends recording of the connection on a parse error, an upgrade or a
// bound.
func (c *Conn) stop(err error) {
	if err == nil {
		return
	}
	c.off = true
	switch {
	case errors.Is(err, errUpgraded):
		c.ring.stats.upgraded.Add(1)
	case errors.Is(err, errLimit):
		c.ring.stats.limited.Add(1)
	case !c.sawHead:
		c.ring.stats.notHTTP.Add(1)
	default:
		c.ring.stats.malformed.Add(1)
	}
	c.release()
}

// Close ends the connection: a response read until the close is complete;
// requests still waiting get an exchange without a response.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { c.mem.refund(c.base); c.base = 0 }()
	c.clientWriting.Store(0)
	c.drainHeld()
	if c.off {
		return
	}
	c.off = true
	if c.h2 != nil {
		c.h2.close()
	} else {
		if c.resp.state == stUntilClose && len(c.pending) > 0 {
			(*conn1)(c).msgDone(true)
		}
		for _, p := range c.pending {
			if p.ex.Response == nil {
				p.ex.Error = "the connection closed before the response"
			} else {
				p.ex.Error = "the connection closed before the response's end"
			}
			c.emit(p)
		}
		c.pending, c.reqCur = nil, nil
	}
	c.release()
}

// release frees what the connection holds and gives back its charges:
// what will not be recorded, and the buffers.
func (c *Conn) release() {
	for _, p := range c.pending {
		p.reqBody.release()
		p.respBody.release()
		c.mem.refund(p.charged)
	}
	c.pending, c.reqCur = nil, nil
	if c.h2 != nil {
		c.h2.release()
	}
	c.req.buf, c.resp.buf, c.held = nil, nil, nil
	c.mem.refund(c.buffered)
	c.buffered = 0
}

// emit stores a finished (or abandoned) exchange.
func (c *Conn) emit(p *pending) {
	now := c.now()
	ex := p.ex
	if p.reqComplete {
		ex.Send = p.reqDone.Sub(p.start)
		if !p.respStart.IsZero() {
			ex.Wait = p.respStart.Sub(p.reqDone)
			ex.Receive = now.Sub(p.respStart)
		}
	} else {
		ex.Send = now.Sub(p.start)
	}
	p.reqBody.finish(&ex.Request)
	if ex.Response != nil {
		p.respBody.finish(ex.Response)
	}
	held := p.held()
	if c.opts.Skip != nil && c.opts.Skip(ex) {
		c.mem.refund(held)
		return
	}
	if c.opts.Observe != nil {
		c.opts.Observe(ex)
	}
	c.opts.Redactor.Apply(ex)
	c.mem.settle(held)
	c.ring.add(ex, held)
}

// newPending starts an exchange for a request head, charging it; nil when
// the connection's share or the budget is full.
func (c *Conn) newPending(proto string, req *recording.Message) *pending {
	cost := pendingCost + len(c.meta.Source) + len(c.meta.Pod) + costOf(req)
	if !c.mem.charge(cost) {
		return nil
	}
	p := &pending{start: c.now(), method: req.Method, charged: cost,
		reqBody: newBody(&c.mem, c.opts.BodyCap), respBody: newBody(&c.mem, c.opts.BodyCap)}
	p.ex = &recording.Exchange{Time: p.start, Pod: c.meta.Pod, Port: c.meta.Port, Source: c.meta.Source,
		Destination: c.meta.Destination, Proto: proto, Request: *req}
	return p
}

// chargeTo charges n more bytes of heads or trailers to p.
func (c *Conn) chargeTo(p *pending, n int) error {
	if !c.mem.charge(n) {
		return fmt.Errorf("%w: the connection's share (%d bytes) or the budget is full", errLimit, c.mem.share)
	}
	p.charged += n
	return nil
}

// conn1 is a Conn seen as the HTTP/1.x parsers' events.
type conn1 Conn

func (c *conn1) headDone(response bool, m *recording.Message, proto string) (framing, int64, error) {
	c.sawHead = true
	if !response {
		p := (*Conn)(c).newPending(proto, m)
		if p == nil {
			return 0, 0, fmt.Errorf("%w: %d exchanges waiting", errLimit, len(c.pending))
		}
		p.upgradeAsked = m.Header.Get("Upgrade") != "" && headerHas(m.Header, "Connection", "upgrade")
		c.upgrading = c.upgrading || p.upgradeAsked
		c.pending = append(c.pending, p)
		c.reqCur = p
		return bodyFraming(m, false, "")
	}
	p := c.waiting()
	if p == nil {
		return 0, 0, fmt.Errorf("%w: a response to no request", errNotHTTP)
	}
	if m.Status == http.StatusSwitchingProtocols && p.upgradeAsked {
		return 0, 0, errUpgraded // the rest is not HTTP/1.x: let it pass
	}
	if p.upgradeAsked && m.Status/100 != 1 {
		c.upgrading = false // refused: the connection stays HTTP/1.x
	}
	if p.respStart.IsZero() {
		p.respStart = c.now()
	}
	if m.Status/100 == 1 {
		return noBody, 0, nil // 100 Continue and friends: the real answer follows
	}
	if err := (*Conn)(c).chargeTo(p, costOf(m)); err != nil {
		return 0, 0, err
	}
	p.ex.Response = m
	return bodyFraming(m, true, p.method)
}

func (c *conn1) bodyBytes(response bool) *bodyBuf {
	if response {
		if p := c.waiting(); p != nil {
			return p.respBody
		}
		return nil
	}
	if c.reqCur == nil {
		return nil
	}
	return c.reqCur.reqBody
}

// trailer adds a trailer field to the message being read.
func (c *conn1) trailer(response bool, name, value string) error {
	p := c.reqCur
	if response {
		p = c.waiting()
	}
	if p == nil {
		return nil // its exchange is already stored
	}
	m := &p.ex.Request
	if response {
		m = p.ex.Response
	}
	if m == nil {
		return nil
	}
	if err := (*Conn)(c).chargeTo(p, len(name)+len(value)+fieldCost); err != nil {
		return err
	}
	if m.Trailer == nil {
		m.Trailer = http.Header{}
	}
	m.Trailer.Add(name, value)
	return nil
}

func (c *conn1) msgDone(response bool) {
	if !response {
		if p := c.reqCur; p != nil {
			p.reqComplete, p.reqDone = true, c.now()
			c.reqCur = nil
		}
		return
	}
	p := c.waiting()
	if p == nil || p.ex.Response == nil {
		return // an interim response ended
	}
	c.pending[0] = nil
	c.pending = c.pending[1:]
	if c.reqCur == p {
		c.reqCur = nil // answered before its request's end
	}
	(*Conn)(c).emit(p)
}

func (c *conn1) paused(response bool) bool { return !response && c.upgrading }

// waiting is the oldest request without its final response.
func (c *conn1) waiting() *pending {
	if len(c.pending) == 0 {
		return nil
	}
	return c.pending[0]
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// heldBytes is how much of the answers is held (for tests).
func (c *Conn) heldBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// charged is what the connection has charged to its meter (for tests).
func (c *Conn) charged() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mem.used
}
