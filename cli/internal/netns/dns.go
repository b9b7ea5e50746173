package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	dnsTimeout = 5 * time.Second
	// dnsConns is how many TCP connections to the pod's nameserver carry
	// the queries, each pipelining many.
	dnsConns = 2
)

// resolver answers CMD's DNS queries: it asks the pod's nameserver over
// TCP through Dial (as the pod would, with CMD's own search list
// expansion), and the machine's resolver for a name the cluster does not
// know (NXDOMAIN, SERVFAIL or REFUSED) when it is not under one of the
// pod's search domains.
type resolver struct {
	cluster *dnsPool
	cache   *dnsCache
	search  []string // lower case, without the trailing dot
	host    []string // the machine's nameservers, "ip:53"
	log     *slog.Logger
}

func newResolver(dial func(ctx context.Context, addr string) (net.Conn, error), servers, search, host []string, log *slog.Logger) *resolver {
	r := &resolver{cluster: &dnsPool{dial: dial, servers: servers}, cache: newDNSCache(defaultDNSCacheConfig()), host: host, log: log}
	for _, s := range search {
		r.search = append(r.search, strings.ToLower(strings.TrimSuffix(s, ".")))
	}
	return r
}

func (r *resolver) close() { r.cluster.close() }

// exchange answers one query (wire format) from the cache or by resolve;
// the answer carries the query's ID and question.
func (r *resolver) exchange(ctx context.Context, q []byte) ([]byte, error) {
	return r.cache.exchange(ctx, q, r.resolve)
}

// resolve answers one query without the cache.
func (r *resolver) resolve(ctx context.Context, q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	if _, err := p.Start(q); err != nil {
		return nil, fmt.Errorf("bad query: %w", err)
	}
	question, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("bad query: %w", err)
	}
	resp, cerr := r.cluster.exchange(ctx, q)
	if cerr == nil && !r.unknown(resp) {
		return resp, nil
	}
	name := strings.ToLower(strings.TrimSuffix(question.Name.String(), "."))
	if len(r.host) == 0 || r.underSearch(name) {
		return resp, cerr
	}
	hresp, herr := r.askHost(ctx, q)
	if herr == nil && (cerr != nil || !r.unknown(hresp)) {
		return hresp, nil
	}
	if cerr != nil {
		return nil, errors.Join(cerr, herr)
	}
	return resp, nil
}

// unknown says whether resp says the cluster does not know the name.
func (r *resolver) unknown(resp []byte) bool {
	if len(resp) < 4 {
		return true
	}
	switch dnsmessage.RCode(resp[3] & 0x0f) {
	case dnsmessage.RCodeNameError, dnsmessage.RCodeServerFailure, dnsmessage.RCodeRefused:
		return true
	}
	return false
}

func (r *resolver) underSearch(name string) bool {
	for _, s := range r.search {
		if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

// askHost asks the machine's nameservers over UDP (TCP when truncated).
func (r *resolver) askHost(ctx context.Context, q []byte) ([]byte, error) {
	var errs []error
	for _, s := range r.host {
		resp, err := udpExchange(ctx, s, q)
		if err == nil && len(resp) > 2 && resp[2]&0x02 != 0 { // TC
			resp, err = tcpExchange(ctx, s, q)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// answerUDP is exchange for a query that came over UDP: a failure is a
// SERVFAIL, and an answer too long for the client is truncated (TC set)
// so that it asks again over TCP.
func (r *resolver) answerUDP(ctx context.Context, q []byte) []byte {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	resp, err := r.exchange(ctx, q)
	if err != nil {
		r.log.Info("DNS query failed", "err", err)
		return reply(q, dnsmessage.RCodeServerFailure, false)
	}
	if len(resp) > udpSize(q) {
		return reply(q, dnsmessage.RCode(resp[3]&0x0f), true)
	}
	return resp
}

// udpSize is the longest UDP answer the query's sender takes.
func udpSize(q []byte) int {
	var p dnsmessage.Parser
	if _, err := p.Start(q); err != nil {
		return 512
	}
	_ = p.SkipAllQuestions()
	_ = p.SkipAllAnswers()
	_ = p.SkipAllAuthorities()
	for {
		h, err := p.AdditionalHeader()
		if err != nil {
			return 512
		}
		if h.Type == dnsmessage.TypeOPT {
			return max(512, int(h.Class))
		}
		if err := p.SkipAdditional(); err != nil {
			return 512
		}
	}
}

// reply builds an answer to q with no records.
func reply(q []byte, rcode dnsmessage.RCode, truncated bool) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, _ := p.AllQuestions()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode, Truncated: truncated})
	_ = b.StartQuestions()
	for _, question := range qs {
		_ = b.Question(question)
	}
	out, _ := b.Finish()
	return out
}

func udpExchange(ctx context.Context, server string, q []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(dnsTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func tcpExchange(ctx context.Context, server string, q []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	} else {
		_ = c.SetDeadline(time.Now().Add(dnsTimeout))
	}
	if err := writeMsg(c, q); err != nil {
		return nil, err
	}
	return readMsg(c)
}

func writeMsg(c net.Conn, m []byte) error {
	b := make([]byte, 2+len(m))
	binary.BigEndian.PutUint16(b, uint16(len(m)))
	copy(b[2:], m)
	_, err := c.Write(b)
	return err
}

func readMsg(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, m)
	return m, err
}
