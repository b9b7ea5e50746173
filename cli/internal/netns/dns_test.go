package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func query(t testing.TB, id uint16, name string, edns int) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	if edns > 0 {
		_ = b.StartAdditionals()
		var rh dnsmessage.ResourceHeader
		_ = rh.SetEDNS0(edns, dnsmessage.RCodeSuccess, false)
		_ = b.OPTResource(rh, dnsmessage.OPTResource{})
	}
	q, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func parse(t testing.TB, m []byte) (dnsmessage.Header, []dnsmessage.Resource) {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(m)
	if err != nil {
		t.Fatalf("parse answer: %v", err)
	}
	_ = p.SkipAllQuestions()
	rs, _ := p.AllAnswers()
	return h, rs
}

// dialTo returns a Dial that sends every address to addr and counts.
func dialTo(addr string, n *atomic.Int32) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func TestResolverPipelines(t *testing.T) {
	var dials atomic.Int32
	r := newResolver(dialTo(dnsServer(t, "tcp", clusterZone), &dials), []string{"10.0.0.10:53"}, nil, nil, slog.New(slog.DiscardHandler))
	defer r.close()
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uint16(40000 + i) // callers' IDs collide across sockets; the pool renumbers
			resp, err := r.exchange(context.Background(), query(t, id, "svc1.ns1.svc.cluster.local.", 0))
			if err != nil {
				errs <- err
				return
			}
			h, rs := parse(t, resp)
			if h.ID != id || len(rs) != 1 {
				errs <- fmt.Errorf("query %d: answer ID %d with %d records", id, h.ID, len(rs))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := dials.Load(); n > dnsConns {
		t.Errorf("%d connections to the nameserver for 500 queries, want at most %d", n, dnsConns)
	}
}

func TestResolverAsksTheMachineForNamesTheClusterDoesNotKnow(t *testing.T) {
	var dials atomic.Int32
	hostZone := zone{"laptop-only.example.": laptopZone["laptop-only.example."], "x.svc.cluster.local.": clusterZone["svc1.ns1.svc.cluster.local."]}
	host := dnsServer(t, "udp", zone(hostZone))
	r := newResolver(dialTo(dnsServer(t, "tcp", clusterZone), &dials), []string{"10.0.0.10:53"},
		[]string{"ns1.svc.cluster.local", "svc.cluster.local", "cluster.local."}, []string{host}, slog.New(slog.DiscardHandler))
	defer r.close()
	for _, tc := range []struct {
		name    string
		rcode   dnsmessage.RCode
		answers int
	}{
		{"svc1.ns1.svc.cluster.local.", dnsmessage.RCodeSuccess, 1},
		{"laptop-only.example.", dnsmessage.RCodeSuccess, 1},   // the machine knows it
		{"x.svc.cluster.local.", dnsmessage.RCodeNameError, 0}, // under the search domains: the cluster's answer stands
		{"nowhere.example.", dnsmessage.RCodeNameError, 0},     // neither knows it
	} {
		resp, err := r.exchange(context.Background(), query(t, 7, tc.name, 0))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		h, rs := parse(t, resp)
		if h.RCode != tc.rcode || len(rs) != tc.answers || h.ID != 7 {
			t.Errorf("%s: rcode %v with %d answers (ID %d), want %v with %d", tc.name, h.RCode, len(rs), h.ID, tc.rcode, tc.answers)
		}
	}
}

func TestResolverUDPAnswers(t *testing.T) {
	t.Run("the pod cannot be reached: SERVFAIL", func(t *testing.T) {
		fail := func(context.Context, string) (net.Conn, error) { return nil, errors.New("agent gone") }
		r := newResolver(fail, []string{"10.0.0.10:53"}, nil, nil, slog.New(slog.DiscardHandler))
		defer r.close()
		h, _ := parse(t, r.answerUDP(context.Background(), query(t, 9, "svc1.ns1.svc.cluster.local.", 0)))
		if h.RCode != dnsmessage.RCodeServerFailure || h.ID != 9 || !h.Response {
			t.Errorf("got %+v, want a SERVFAIL response with ID 9", h)
		}
	})
	t.Run("too long for UDP: truncated", func(t *testing.T) {
		big := bigServer(t, 40)
		var dials atomic.Int32
		r := newResolver(dialTo(big, &dials), []string{"10.0.0.10:53"}, nil, nil, slog.New(slog.DiscardHandler))
		defer r.close()
		h, rs := parse(t, r.answerUDP(context.Background(), query(t, 3, "big.example.", 0)))
		if !h.Truncated || len(rs) != 0 {
			t.Errorf("without EDNS: truncated %v with %d answers, want TC and none", h.Truncated, len(rs))
		}
		h, rs = parse(t, r.answerUDP(context.Background(), query(t, 4, "big.example.", 4096)))
		if h.Truncated || len(rs) != 40 {
			t.Errorf("with EDNS 4096: truncated %v with %d answers, want all 40", h.Truncated, len(rs))
		}
	})
	t.Run("a dead connection is replaced", func(t *testing.T) {
		var dials atomic.Int32
		addr := dnsServer(t, "tcp", clusterZone)
		var conns []net.Conn
		var mu sync.Mutex
		dial := func(ctx context.Context, a string) (net.Conn, error) {
			c, err := dialTo(addr, &dials)(ctx, a)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			return c, err
		}
		r := newResolver(dial, []string{"10.0.0.10:53"}, nil, nil, slog.New(slog.DiscardHandler))
		defer r.close()
		for i := range 3 {
			if _, err := r.resolve(context.Background(), query(t, 1, "svc1.ns1.svc.cluster.local.", 0)); err != nil { // not the cache
				t.Fatalf("query %d: %v", i, err)
			}
			mu.Lock()
			for _, c := range conns {
				c.Close() // the agent went away
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// bigServer answers every query over TCP with n A records.
func bigServer(t *testing.T, n int) string {
	l := listenLocal(t)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					q, err := readMsg(c)
					if err != nil {
						return
					}
					var p dnsmessage.Parser
					h, _ := p.Start(q)
					qq, _ := p.Question()
					b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
					_ = b.StartQuestions()
					_ = b.Question(qq)
					_ = b.StartAnswers()
					for i := range n {
						_ = b.AResource(dnsmessage.ResourceHeader{Name: qq.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: [4]byte{10, 0, byte(i / 256), byte(i)}})
					}
					resp, _ := b.Finish()
					_ = writeMsg(c, resp)
				}
			}()
		}
	}()
	return l.Addr().String()
}
