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
	// MaxHead bounds a message head; a longer one ends recording of the
	// connection.
	MaxHead  int
	Redactor recording.Redactor
}

// DefaultOptions: 1 MiB per body, 64 KiB per head, default redaction.
func DefaultOptions() Options {
	return Options{BodyCap: 1 << 20, MaxHead: 64 << 10}
}

// Conn watches one connection. FromClient and FromServer may be called
// from two goroutines; Close once both directions ended.
type Conn struct {
	mu      sync.Mutex
	meta    Meta
	opts    Options
	ring    *Ring
	now     func() time.Time
	off     bool // not HTTP, upgraded, or closed: bytes pass unrecorded
	h2      *h2conn
	started bool
	// clientWriting counts the caller's writes in progress; held keeps
	// answers that came meanwhile.
	clientWriting atomic.Int32
	held          []byte
	sawHead       bool // a message head parsed: later garbage is malformed HTTP
	// upgrading: a request asked to switch protocols; the caller's next
	// bytes may be the new protocol, so they are not parsed until the
	// answer says whether the switch happened.
	upgrading bool
	req       half
	resp      half
	pending   []*pending
}

// pending is an exchange whose request has been seen.
type pending struct {
	ex                        *recording.Exchange
	start, reqDone, respStart time.Time
	reqBody, respBody         *bodyBuf
	reqComplete, upgradeAsked bool
	method                    string
}

// NewConn starts watching a connection; exchanges go into ring.
func (r *Ring) NewConn(meta Meta, opts Options) *Conn {
	c := &Conn{meta: meta, opts: opts, ring: r, now: time.Now}
	c.resp.response = true
	r.stats.conns.Add(1)
	return c
}

// FromClient observes bytes the caller sent.
func (c *Conn) FromClient(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fromClient(p)
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
	if c.clientWriting.Add(-1) == 0 && len(c.held) > 0 {
		held := c.held
		c.held = nil
		c.fromServer(held)
	}
}

func (c *Conn) fromClient(p []byte) {
	if c.off || len(p) == 0 {
		return
	}
	if !c.started {
		c.started = true
		if h2Preface(p) {
			c.h2, c.sawHead = newH2Conn(c), true
		}
	}
	var err error
	switch {
	case c.h2 != nil:
		err = c.h2.feed(p, false)
	default:
		err = c.req.feed(p, (*conn1)(c), c.opts.MaxHead)
	}
	c.stop(err)
}

// FromServer observes bytes the app (or the laptop) answered.
func (c *Conn) FromServer(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || len(p) == 0 {
		return
	}
	if c.clientWriting.Load() > 0 {
		// A request being written may be what this answers: parse after it.
		if len(c.held)+len(p) > maxHeld {
			c.stop(fmt.Errorf("%w: more than %d bytes of answers while a request was being written", errNotHTTP, maxHeld))
			return
		}
		c.held = append(c.held, p...)
		return
	}
	c.fromServer(p)
}

// maxHeld bounds the answers held while a request is being written (a
// stream whose request never ends, with answers flowing, stops recording).
const maxHeld = 1 << 20

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
	c.stop(err)
}

// errUpgraded ends parsing after a protocol switch.
var errUpgraded = errors.New("upgraded")

// stop ends recording of the connection on a parse error or an upgrade.
func (c *Conn) stop(err error) {
	if err == nil {
		return
	}
	c.off, c.held = true, nil
	switch {
	case errors.Is(err, errUpgraded):
		c.ring.stats.upgraded.Add(1)
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
	if len(c.held) > 0 {
		held := c.held
		c.held = nil
		c.fromServer(held)
	}
	if c.off {
		return
	}
	c.off = true
	if c.h2 != nil {
		c.h2.close()
		return
	}
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
	c.pending = nil
}

// release frees the bodies' reservations of what will not be recorded.
func (c *Conn) release() {
	for _, p := range c.pending {
		p.reqBody.release()
		p.respBody.release()
	}
	c.pending = nil
	if c.h2 != nil {
		c.h2.release()
	}
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
	c.opts.Redactor.Apply(ex)
	c.ring.add(ex, p.reqBody.reserved+p.respBody.reserved)
}

func (c *Conn) newExchange(proto string, req *recording.Message) *recording.Exchange {
	return &recording.Exchange{Time: c.now(), Pod: c.meta.Pod, Port: c.meta.Port, Source: c.meta.Source,
		Destination: c.meta.Destination, Proto: proto, Request: *req}
}

// conn1 is a Conn seen as the HTTP/1.x parsers' events.
type conn1 Conn

func (c *conn1) headDone(response bool, m *recording.Message, proto string) (framing, int64, error) {
	now := c.now()
	c.sawHead = true
	if !response {
		p := &pending{start: now, method: m.Method, reqBody: c.ring.newBody(c.opts.BodyCap), respBody: c.ring.newBody(c.opts.BodyCap)}
		p.ex = (*Conn)(c).newExchange(proto, m)
		p.upgradeAsked = m.Header.Get("Upgrade") != "" && headerHas(m.Header, "Connection", "upgrade")
		c.upgrading = c.upgrading || p.upgradeAsked
		c.pending = append(c.pending, p)
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
		p.respStart = now
	}
	if m.Status/100 == 1 {
		return noBody, 0, nil // 100 Continue and friends: the real answer follows
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
	return c.pending[len(c.pending)-1].reqBody
}

func (c *conn1) msgDone(response bool) {
	if !response {
		for _, p := range c.pending {
			if !p.reqComplete {
				p.reqComplete, p.reqDone = true, c.now()
				break
			}
		}
		return
	}
	p := c.waiting()
	if p == nil || p.ex.Response == nil {
		return // an interim response ended
	}
	c.pending = c.pending[1:]
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
