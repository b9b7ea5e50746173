package netns

import (
	"container/list"
	"context"
	"encoding/binary"
	"sync"
	"time"
)

// dnsCacheConfig bounds the cache of DNS answers.
type dnsCacheConfig struct {
	// MaxEntries is how many answers the cache holds at most; the least
	// recently used goes first.
	MaxEntries int
	// MaxBytes bounds the answers' total size in bytes.
	MaxBytes int
	// MaxTTL caps how long an answer is kept, whatever its TTLs say.
	MaxTTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func defaultDNSCacheConfig() dnsCacheConfig {
	return dnsCacheConfig{MaxEntries: 4096, MaxBytes: 4 << 20, MaxTTL: time.Hour}
}

// dnsCache keeps answers as a caching stub resolver does (nscd,
// systemd-resolved): an answer is kept for the smallest TTL of its answer
// and authority records (a negative answer for its SOA's, RFC 2308), and
// served with the query's ID and question (case included) and every TTL
// lowered by the time it spent in the cache. Concurrent identical queries
// share one upstream query. Nothing else about an answer changes.
type dnsCache struct {
	cfg dnsCacheConfig

	mu      sync.Mutex
	entries map[string]*list.Element // of *dnsEntry
	lru     list.List                // front: most recently used
	bytes   int
	flights map[string]*dnsFlight
}

type dnsEntry struct {
	key     string
	msg     []byte // the upstream answer as received
	qend    int    // end of its question section
	ttls    []int  // offsets of every record's TTL but OPT's
	stored  time.Time
	expires time.Time
}

type dnsFlight struct {
	done    chan struct{}
	waiters int // queries waiting for this one (for tests)
	resp    []byte
	qend    int // 0 when resp cannot be handed to other queries
	err     error
}

func newDNSCache(cfg dnsCacheConfig) *dnsCache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &dnsCache{cfg: cfg, entries: map[string]*list.Element{}, flights: map[string]*dnsFlight{}}
}

// exchange answers q from the cache, else through upstream.
func (c *dnsCache) exchange(ctx context.Context, q []byte, upstream func(context.Context, []byte) ([]byte, error)) ([]byte, error) {
	key, qend, ok := cacheKey(q)
	if !ok {
		return upstream(ctx, q)
	}
	c.mu.Lock()
	if e := c.lookupLocked(key); e != nil {
		resp := e.serve(q, c.cfg.Now())
		c.mu.Unlock()
		return resp, nil
	}
	if f := c.flights[key]; f != nil {
		f.waiters++
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err == nil && f.qend == qend {
			return echo(f.resp, q, qend), nil
		}
		return upstream(ctx, q) // the shared query failed: ask on our own
	}
	f := &dnsFlight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()

	resp, err := upstream(ctx, q)
	f.resp, f.err = resp, err
	var e *dnsEntry
	if err == nil {
		var lifetime time.Duration
		e, lifetime = parseAnswer(resp, q, qend)
		if e != nil {
			f.qend = qend
			if lifetime > 0 {
				now := c.cfg.Now()
				e.key, e.stored, e.expires = key, now, now.Add(min(lifetime, c.cfg.MaxTTL))
			} else {
				e = nil
			}
		}
	}
	c.mu.Lock()
	delete(c.flights, key)
	if e != nil {
		c.storeLocked(e)
	}
	c.mu.Unlock()
	close(f.done)
	return resp, err
}

func (c *dnsCache) lookupLocked(key string) *dnsEntry {
	el := c.entries[key]
	if el == nil {
		return nil
	}
	e := el.Value.(*dnsEntry)
	if !c.cfg.Now().Before(e.expires) {
		c.removeLocked(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return e
}

func (c *dnsCache) storeLocked(e *dnsEntry) {
	if len(e.msg) > c.cfg.MaxBytes || c.cfg.MaxEntries <= 0 {
		return
	}
	if el := c.entries[e.key]; el != nil {
		c.removeLocked(el)
	}
	c.entries[e.key] = c.lru.PushFront(e)
	c.bytes += len(e.msg)
	for len(c.entries) > c.cfg.MaxEntries || c.bytes > c.cfg.MaxBytes {
		c.removeLocked(c.lru.Back())
	}
}

func (c *dnsCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*dnsEntry)
	delete(c.entries, e.key)
	c.bytes -= len(e.msg)
}

// serve returns the cached answer for q at now.
func (e *dnsEntry) serve(q []byte, now time.Time) []byte {
	out := echo(e.msg, q, e.qend)
	spent := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttls {
		ttl := binary.BigEndian.Uint32(out[off:])
		binary.BigEndian.PutUint32(out[off:], ttl-min(ttl, spent))
	}
	return out
}

// echo copies resp with q's ID and question section (same length: they
// differ at most in case).
func echo(resp, q []byte, qend int) []byte {
	out := append([]byte(nil), resp...)
	copy(out[:2], q[:2])
	copy(out[12:qend], q[12:qend])
	return out
}

const (
	typeSOA = 6
	typeOPT = 41

	flagQR     = 0x80 // byte 2
	flagOpcode = 0x78 // byte 2
	flagTC     = 0x02 // byte 2
	flagRD     = 0x01 // byte 2
	flagAD     = 0x20 // byte 3
	flagCD     = 0x10 // byte 3
	maskRCode  = 0x0f // byte 3

	rcodeSuccess  = 0
	rcodeNameErr  = 3
	maxSignedTTL  = 1<<31 - 1 // RFC 2181 8: larger TTLs count as 0
	minSOARDataSz = 2 + 20    // two root names and five counters
)

// cacheKey is what an answer to q depends on: the question (name in lower
// case), the RD, AD and CD bits and the EDNS version, flags and options.
// ok is false for a query that is not cached: not a standard query with
// one question, or one that does not parse.
func cacheKey(q []byte) (key string, qend int, ok bool) {
	if len(q) < 12 || q[2]&(flagQR|flagOpcode|flagTC) != 0 {
		return "", 0, false
	}
	qd, an, ns, ar := be16(q[4:]), be16(q[6:]), be16(q[8:]), be16(q[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return "", 0, false
	}
	off, ok := skipName(q, 12, false)
	if !ok || off+4 > len(q) {
		return "", 0, false
	}
	qend = off + 4
	k := make([]byte, 0, qend-12+2+len(q)-qend)
	for _, b := range q[12:qend] {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		k = append(k, b)
	}
	k = append(k, q[2]&flagRD, q[3]&(flagAD|flagCD))
	if ar == 1 { // must be OPT: its version, DO and Z bits and options
		o := qend
		if o+11 > len(q) || q[o] != 0 || be16(q[o+1:]) != typeOPT {
			return "", 0, false
		}
		rdlen := int(be16(q[o+9:]))
		if o+11+rdlen != len(q) {
			return "", 0, false
		}
		k = append(k, 1)
		k = append(k, q[o+6:o+9]...) // version, DO, Z
		k = append(k, q[o+11:]...)   // options
	} else if qend != len(q) {
		return "", 0, false
	}
	return string(k), qend, true
}

// parseAnswer checks that resp answers q and finds its TTLs. It returns
// nil for an answer that cannot be handed to another query (malformed,
// another question); lifetime is how long it may be cached, 0 for not at
// all (truncated, an error other than NXDOMAIN, a TTL of 0, no records to
// take a TTL from).
func parseAnswer(resp, q []byte, qend int) (*dnsEntry, time.Duration) {
	if len(resp) < qend || resp[2]&flagQR == 0 || be16(resp[4:]) != 1 {
		return nil, 0
	}
	for i := 12; i < qend; i++ {
		a, b := resp[i], q[i]
		if a != b && !(isLetter(a) && a|0x20 == b|0x20) {
			return nil, 0
		}
	}
	e := &dnsEntry{msg: append([]byte(nil), resp...), qend: qend}
	counts := [3]int{int(be16(resp[6:])), int(be16(resp[8:])), int(be16(resp[10:]))}
	rcode := resp[3] & maskRCode
	negative := rcode == rcodeNameErr || counts[0] == 0
	lifetime, seen, soa := uint32(maxSignedTTL), false, false
	off := qend
	for section, n := range counts {
		for range n {
			var ok bool
			if off, ok = skipName(resp, off, true); !ok || off+10 > len(resp) {
				return nil, 0
			}
			typ, ttl, rdlen := be16(resp[off:]), binary.BigEndian.Uint32(resp[off+4:]), int(be16(resp[off+8:]))
			rdata := off + 10
			if rdata+rdlen > len(resp) {
				return nil, 0
			}
			if typ == typeOPT {
				if resp[off+4] != 0 { // an extended RCODE: an error
					rcode = 0xff
				}
			} else {
				e.ttls = append(e.ttls, off+4)
			}
			if section < 2 {
				if ttl > maxSignedTTL {
					ttl = 0
				}
				if typ == typeSOA && negative && section == 1 {
					if rdlen < minSOARDataSz {
						return nil, 0
					}
					ttl = min(ttl, binary.BigEndian.Uint32(resp[rdata+rdlen-4:]))
					soa = true
				}
				lifetime, seen = min(lifetime, ttl), true
			}
			off = rdata + rdlen
		}
	}
	if off != len(resp) {
		return nil, 0
	}
	if !seen || (negative && !soa) || resp[2]&flagTC != 0 || (rcode != rcodeSuccess && rcode != rcodeNameErr) {
		return e, 0
	}
	return e, time.Duration(lifetime) * time.Second
}

// skipName returns the offset after the name at off; pointers are
// allowed only where compressed is true.
func skipName(m []byte, off int, compressed bool) (int, bool) {
	for n := 0; off < len(m) && n < 128; n++ {
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0:
			if !compressed || off+2 > len(m) {
				return 0, false
			}
			return off + 2, true
		case l&0xc0 != 0:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func isLetter(b byte) bool { return 'a' <= b|0x20 && b|0x20 <= 'z' }
