package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// upstreamAnswer says how the fake upstream answers a query.
type upstreamAnswer struct {
	rcode     dnsmessage.RCode
	truncated bool
	answers   []uint32 // TTLs of A records for the question's name
	soa       *[2]uint32
	nsTTL     uint32 // an NS record in authority when not 0
	edns      bool   // an OPT record in the answer
	mangle    func([]byte) []byte
}

// fakeUpstream answers every query with a; it counts queries.
type fakeUpstream struct {
	a     upstreamAnswer
	n     atomic.Int32
	block chan struct{} // when set, every query waits for it to close
}

func (u *fakeUpstream) exchange(ctx context.Context, q []byte) ([]byte, error) {
	u.n.Add(1)
	if u.block != nil {
		select {
		case <-u.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	question, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: u.a.rcode, Truncated: u.a.truncated})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	for i, ttl := range u.a.answers {
		_ = b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.AResource{A: [4]byte{10, 0, 0, byte(i)}})
	}
	_ = b.StartAuthorities()
	zone := dnsmessage.MustNewName("cluster.local.")
	if u.a.soa != nil {
		_ = b.SOAResource(dnsmessage.ResourceHeader{Name: zone, Class: dnsmessage.ClassINET, TTL: u.a.soa[0]},
			dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.dns.cluster.local."), MBox: dnsmessage.MustNewName("hostmaster.cluster.local."), Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, MinTTL: u.a.soa[1]})
	}
	if u.a.nsTTL != 0 {
		_ = b.NSResource(dnsmessage.ResourceHeader{Name: zone, Class: dnsmessage.ClassINET, TTL: u.a.nsTTL}, dnsmessage.NSResource{NS: dnsmessage.MustNewName("ns.dns.cluster.local.")})
	}
	_ = b.StartAdditionals()
	if u.a.edns {
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	out, err := b.Finish()
	if u.a.mangle != nil {
		out = u.a.mangle(out)
	}
	return out, err
}

func newTestCache(t testing.TB, cfg dnsCacheConfig) (*dnsCache, *clock) {
	c := &clock{t: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)}
	if cfg.MaxEntries == 0 {
		cfg = defaultDNSCacheConfig()
	}
	cfg.Now = c.now
	return newDNSCache(cfg), c
}

type queryOpts struct {
	typ   dnsmessage.Type
	class dnsmessage.Class
	noRD  bool
	cd    bool
	edns  int
	do    bool
}

func mkQuery(t testing.TB, id uint16, name string, o queryOpts) []byte {
	t.Helper()
	if o.typ == 0 {
		o.typ = dnsmessage.TypeA
	}
	if o.class == 0 {
		o.class = dnsmessage.ClassINET
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: !o.noRD, CheckingDisabled: o.cd})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: o.typ, Class: o.class})
	if o.edns > 0 {
		_ = b.StartAdditionals()
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(o.edns, dnsmessage.RCodeSuccess, o.do)
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// seen is what a client reads in an answer.
type seen struct {
	ID       uint16
	RCode    dnsmessage.RCode
	Question string
	Names    []string
	TTLs     []uint32 // answer then authority
	OPTTTL   []uint32
}

func read(t testing.TB, m []byte) seen {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(m)
	if err != nil {
		t.Fatalf("parse answer: %v", err)
	}
	q, err := p.Question()
	if err != nil {
		t.Fatalf("parse question: %v", err)
	}
	_ = p.SkipAllQuestions()
	s := seen{ID: h.ID, RCode: h.RCode, Question: q.Name.String()}
	as, _ := p.AllAnswers()
	ns, _ := p.AllAuthorities()
	ad, _ := p.AllAdditionals()
	for _, r := range append(as, ns...) {
		s.Names = append(s.Names, r.Header.Name.String())
		s.TTLs = append(s.TTLs, r.Header.TTL)
	}
	for _, r := range ad {
		if r.Header.Type == dnsmessage.TypeOPT {
			s.OPTTTL = append(s.OPTTTL, r.Header.TTL)
		}
	}
	return s
}

func ask(t testing.TB, c *dnsCache, u *fakeUpstream, q []byte) seen {
	t.Helper()
	resp, err := c.exchange(context.Background(), q, u.exchange)
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

func TestDNSCacheServesWithQueryIDQuestionAndAgedTTLs(t *testing.T) {
	c, clk := newTestCache(t, dnsCacheConfig{})
	u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{30, 10}, nsTTL: 20, edns: true}}
	first := ask(t, c, u, mkQuery(t, 1, "orders.shop.svc.cluster.local.", queryOpts{edns: 1232}))
	if diff := cmp.Diff(seen{ID: 1, Question: "orders.shop.svc.cluster.local.", Names: []string{"orders.shop.svc.cluster.local.", "orders.shop.svc.cluster.local.", "cluster.local."}, TTLs: []uint32{30, 10, 20}, OPTTTL: []uint32{0}}, first); diff != "" {
		t.Errorf("first answer (-want +got):\n%s", diff)
	}
	clk.advance(3500 * time.Millisecond)
	got := ask(t, c, u, mkQuery(t, 2, "Orders.SHOP.svc.cluster.local.", queryOpts{edns: 1232}))
	want := seen{ID: 2, Question: "Orders.SHOP.svc.cluster.local.", Names: []string{"Orders.SHOP.svc.cluster.local.", "Orders.SHOP.svc.cluster.local.", "cluster.local."}, TTLs: []uint32{27, 7, 17}, OPTTTL: []uint32{0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from the cache after 3.5 s (-want +got):\n%s", diff)
	}
	if n := u.n.Load(); n != 1 {
		t.Errorf("%d upstream queries, want 1", n)
	}
	clk.advance(6500 * time.Millisecond) // 10 s: the smallest TTL is spent
	if got := ask(t, c, u, mkQuery(t, 3, "orders.shop.svc.cluster.local.", queryOpts{edns: 1232})); got.TTLs[1] != 10 {
		t.Errorf("after 10 s the TTLs are %v, want a fresh answer", got.TTLs)
	}
	if n := u.n.Load(); n != 2 {
		t.Errorf("%d upstream queries, want 2 (the answer expired after its smallest TTL)", n)
	}
}

func TestDNSCacheKey(t *testing.T) {
	const name = "orders.shop.svc.cluster.local."
	for _, tc := range []struct {
		desc string
		base queryOpts
		o    queryOpts
	}{
		{"AAAA", queryOpts{}, queryOpts{typ: dnsmessage.TypeAAAA}},
		{"class CHAOS", queryOpts{}, queryOpts{class: dnsmessage.ClassCHAOS}},
		{"no RD", queryOpts{}, queryOpts{noRD: true}},
		{"CD", queryOpts{}, queryOpts{cd: true}},
		{"EDNS", queryOpts{}, queryOpts{edns: 1232}},
		{"EDNS with DO", queryOpts{edns: 1232}, queryOpts{edns: 1232, do: true}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, _ := newTestCache(t, dnsCacheConfig{})
			u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{30}}}
			ask(t, c, u, mkQuery(t, 1, name, tc.base))
			ask(t, c, u, mkQuery(t, 2, name, tc.o))
			ask(t, c, u, mkQuery(t, 3, name, tc.o))
			if n := u.n.Load(); n != 2 {
				t.Errorf("%d upstream queries, want 2: one for the first query, one for %s", n, tc.desc)
			}
		})
	}
	t.Run("the UDP size does not matter", func(t *testing.T) {
		c, _ := newTestCache(t, dnsCacheConfig{})
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{30}}}
		ask(t, c, u, mkQuery(t, 1, name, queryOpts{edns: 1232}))
		ask(t, c, u, mkQuery(t, 2, name, queryOpts{edns: 4096}))
		if n := u.n.Load(); n != 1 {
			t.Errorf("%d upstream queries, want 1", n)
		}
	})
}

func TestDNSCacheNegativeAnswers(t *testing.T) {
	const name = "payments.shop.svc.cluster.local."
	for _, tc := range []struct {
		desc  string
		a     upstreamAnswer
		keep  time.Duration // 0: not cached
		rcode dnsmessage.RCode
	}{
		{"NXDOMAIN: SOA MINIMUM below its TTL", upstreamAnswer{rcode: dnsmessage.RCodeNameError, soa: &[2]uint32{30, 5}}, 5 * time.Second, dnsmessage.RCodeNameError},
		{"NXDOMAIN: SOA TTL below its MINIMUM", upstreamAnswer{rcode: dnsmessage.RCodeNameError, soa: &[2]uint32{4, 60}}, 4 * time.Second, dnsmessage.RCodeNameError},
		{"NODATA by its SOA", upstreamAnswer{soa: &[2]uint32{30, 5}}, 5 * time.Second, dnsmessage.RCodeSuccess},
		{"NXDOMAIN without SOA", upstreamAnswer{rcode: dnsmessage.RCodeNameError}, 0, dnsmessage.RCodeNameError},
		{"NXDOMAIN with NS but no SOA", upstreamAnswer{rcode: dnsmessage.RCodeNameError, nsTTL: 30}, 0, dnsmessage.RCodeNameError},
		{"NODATA without SOA", upstreamAnswer{}, 0, dnsmessage.RCodeSuccess},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, clk := newTestCache(t, dnsCacheConfig{})
			u := &fakeUpstream{a: tc.a}
			for i := range 2 {
				if got := ask(t, c, u, mkQuery(t, uint16(i), name, queryOpts{})); got.RCode != tc.rcode || got.ID != uint16(i) {
					t.Errorf("answer %d: %v with ID %d, want %v with ID %d", i, got.RCode, got.ID, tc.rcode, i)
				}
			}
			want := int32(1)
			if tc.keep == 0 {
				want = 2
			}
			if n := u.n.Load(); n != want {
				t.Fatalf("%d upstream queries for two, want %d", n, want)
			}
			if tc.keep == 0 {
				return
			}
			clk.advance(tc.keep - time.Millisecond)
			ask(t, c, u, mkQuery(t, 3, name, queryOpts{}))
			if n := u.n.Load(); n != 1 {
				t.Errorf("just before %v: %d upstream queries, want 1", tc.keep, n)
			}
			clk.advance(time.Millisecond)
			ask(t, c, u, mkQuery(t, 4, name, queryOpts{}))
			if n := u.n.Load(); n != 2 {
				t.Errorf("at %v: %d upstream queries, want 2 (expired)", tc.keep, n)
			}
		})
	}
}

func TestDNSCacheDoesNotKeep(t *testing.T) {
	for _, tc := range []struct {
		desc string
		a    upstreamAnswer
	}{
		{"TTL 0", upstreamAnswer{answers: []uint32{30, 0}}},
		{"a TTL with the high bit set (RFC 2181: 0)", upstreamAnswer{answers: []uint32{1 << 31}}},
		{"truncated", upstreamAnswer{truncated: true, answers: []uint32{30}}},
		{"SERVFAIL", upstreamAnswer{rcode: dnsmessage.RCodeServerFailure, soa: &[2]uint32{30, 30}}},
		{"REFUSED", upstreamAnswer{rcode: dnsmessage.RCodeRefused, soa: &[2]uint32{30, 30}}},
		{"an extended RCODE in OPT", upstreamAnswer{answers: []uint32{30}, edns: true, mangle: func(m []byte) []byte {
			m[len(m)-11+5] = 1 // the OPT record is last: its TTL's first byte
			return m
		}}},
		{"trailing bytes", upstreamAnswer{answers: []uint32{30}, mangle: func(m []byte) []byte { return append(m, 0) }}},
		{"cut short", upstreamAnswer{answers: []uint32{30}, mangle: func(m []byte) []byte { return m[:len(m)-2] }}},
		{"another question", upstreamAnswer{answers: []uint32{30}, mangle: func(m []byte) []byte {
			m[13] = 'x'
			return m
		}}},
		{"not a response", upstreamAnswer{answers: []uint32{30}, mangle: func(m []byte) []byte {
			m[2] &^= 0x80
			return m
		}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, _ := newTestCache(t, dnsCacheConfig{})
			u := &fakeUpstream{a: tc.a}
			for i := range 2 {
				resp, err := c.exchange(context.Background(), mkQuery(t, uint16(i), "orders.shop.svc.cluster.local.", queryOpts{}), u.exchange)
				if err != nil {
					t.Fatal(err)
				}
				if len(resp) < 2 || resp[0] != 0 || resp[1] != byte(i) {
					t.Errorf("answer %d does not carry the query's ID", i)
				}
			}
			if n := u.n.Load(); n != 2 {
				t.Errorf("%d upstream queries for two, want 2 (nothing cached)", n)
			}
		})
	}
	t.Run("upstream errors", func(t *testing.T) {
		c, _ := newTestCache(t, dnsCacheConfig{})
		var n int
		fail := func(context.Context, []byte) ([]byte, error) { n++; return nil, errors.New("agent gone") }
		for i := range 2 {
			if _, err := c.exchange(context.Background(), mkQuery(t, uint16(i), "orders.", queryOpts{}), fail); err == nil {
				t.Errorf("query %d: no error", i)
			}
		}
		if n != 2 {
			t.Errorf("%d upstream queries, want 2", n)
		}
	})
	t.Run("queries that are not standard", func(t *testing.T) {
		c, _ := newTestCache(t, dnsCacheConfig{})
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{30}}}
		q := mkQuery(t, 1, "orders.", queryOpts{})
		notify := append([]byte(nil), q...)
		notify[2] |= 4 << 3 // opcode NOTIFY
		for range 2 {
			if _, err := c.exchange(context.Background(), notify, u.exchange); err != nil {
				t.Fatal(err)
			}
		}
		if n := u.n.Load(); n != 2 {
			t.Errorf("%d upstream queries for two NOTIFY, want 2", n)
		}
	})
}

func TestDNSCacheBounds(t *testing.T) {
	t.Run("entries: least recently used goes", func(t *testing.T) {
		c, _ := newTestCache(t, dnsCacheConfig{MaxEntries: 2, MaxBytes: 1 << 20, MaxTTL: time.Hour})
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{300}}}
		for _, name := range []string{"a.", "b.", "a.", "c.", "a.", "b."} { // c evicts b; b is asked again
			ask(t, c, u, mkQuery(t, 1, name, queryOpts{}))
		}
		if n := u.n.Load(); n != 4 {
			t.Errorf("%d upstream queries, want 4 (a, b, c, b again)", n)
		}
		if len(c.entries) != 2 || c.lru.Len() != 2 {
			t.Errorf("%d entries, want 2", len(c.entries))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{300}}}
		size := len(must(u.exchange(context.Background(), mkQuery(t, 1, "a.", queryOpts{}))))
		c, _ := newTestCache(t, dnsCacheConfig{MaxEntries: 100, MaxBytes: 2*size + size/2, MaxTTL: time.Hour})
		for _, name := range []string{"a.", "b.", "c."} {
			ask(t, c, u, mkQuery(t, 1, name, queryOpts{}))
		}
		if len(c.entries) != 2 || c.bytes != 2*size {
			t.Errorf("%d entries of %d bytes, want 2 of %d", len(c.entries), c.bytes, 2*size)
		}
	})
	t.Run("an answer larger than the cache is not kept", func(t *testing.T) {
		c, _ := newTestCache(t, dnsCacheConfig{MaxEntries: 100, MaxBytes: 10, MaxTTL: time.Hour})
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{300}}}
		ask(t, c, u, mkQuery(t, 1, "a.", queryOpts{}))
		if len(c.entries) != 0 || c.bytes != 0 {
			t.Errorf("%d entries of %d bytes, want none", len(c.entries), c.bytes)
		}
	})
	t.Run("MaxTTL", func(t *testing.T) {
		c, clk := newTestCache(t, dnsCacheConfig{MaxEntries: 100, MaxBytes: 1 << 20, MaxTTL: time.Minute})
		u := &fakeUpstream{a: upstreamAnswer{answers: []uint32{3600}}}
		ask(t, c, u, mkQuery(t, 1, "a.", queryOpts{}))
		clk.advance(time.Minute)
		ask(t, c, u, mkQuery(t, 1, "a.", queryOpts{}))
		if n := u.n.Load(); n != 2 {
			t.Errorf("%d upstream queries, want 2 (kept for a minute only)", n)
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestDNSCacheCoalescesConcurrentQueries(t *testing.T) {
	c, _ := newTestCache(t, dnsCacheConfig{})
	for _, a := range []upstreamAnswer{
		{answers: []uint32{30}},                // cached afterwards
		{rcode: dnsmessage.RCodeServerFailure}, // shared, not cached
	} {
		u := &fakeUpstream{a: a, block: make(chan struct{})}
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		name := fmt.Sprintf("r%d.shop.svc.cluster.local.", a.rcode)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q := mkQuery(t, uint16(100+i), name, queryOpts{})
				if i%2 == 1 {
					q = bytes.ToUpper(q) // the same question in another case (IDs are not letters here)
					q[0], q[1] = 0, byte(100+i)
				}
				resp, err := c.exchange(context.Background(), q, u.exchange)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(resp[:2], q[:2]) || !bytes.Equal(resp[12:12+len(name)+5], q[12:12+len(name)+5]) {
					errs <- fmt.Errorf("query %d: answer with another ID or question", i)
				}
			}()
		}
		for tries := 0; ; tries++ { // every query waits on the first one
			if tries == 10000 {
				t.Fatalf("%d queries never all waited on one upstream query", n)
			}
			c.mu.Lock()
			w := 0
			for _, f := range c.flights {
				w += f.waiters
			}
			c.mu.Unlock()
			if w == n-1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(u.block)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := u.n.Load(); got != 1 {
			t.Errorf("rcode %v: %d upstream queries for %d concurrent ones, want 1", a.rcode, got, n)
		}
	}
}
