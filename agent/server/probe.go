package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tetherkube/tether/agent"
)

// resolvConfPath is where the kubelet mounts the pod's resolver config.
const resolvConfPath = "/etc/resolv.conf"

func (s *sessionService) ResolvConf(context.Context) ([]byte, error) {
	// tether run reads it too: its process resolves names as the pod does.
	if err := s.agent.serving("ResolvConf", agent.JobProbe, agent.JobRun); err != nil {
		return nil, err
	}
	return os.ReadFile(resolvConfPath)
}

func (s *sessionService) QueryDNS(ctx context.Context, q agent.DNSQuery) (agent.DNSAnswer, error) {
	// The namespace mode of tether run asks the pod's resolver through it.
	if err := s.agent.serving("QueryDNS", agent.JobProbe, agent.JobRun); err != nil {
		return agent.DNSAnswer{}, err
	}
	return queryDNS(ctx, q)
}

func (s *sessionService) Probe(ctx context.Context, req agent.ProbeRequest) (agent.ProbeResult, error) {
	if err := s.agent.serving("Probe", agent.JobProbe); err != nil {
		return agent.ProbeResult{}, err
	}
	return probe(ctx, req)
}

var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME,
	"SRV": dnsmessage.TypeSRV, "TXT": dnsmessage.TypeTXT, "PTR": dnsmessage.TypePTR,
	"MX": dnsmessage.TypeMX, "NS": dnsmessage.TypeNS, "SOA": dnsmessage.TypeSOA,
}

var rcodeNames = map[dnsmessage.RCode]string{
	dnsmessage.RCodeSuccess: "NOERROR", dnsmessage.RCodeFormatError: "FORMERR",
	dnsmessage.RCodeServerFailure: "SERVFAIL", dnsmessage.RCodeNameError: "NXDOMAIN",
	dnsmessage.RCodeNotImplemented: "NOTIMP", dnsmessage.RCodeRefused: "REFUSED",
}

// queryDNS sends q over UDP, and again over TCP when the answer is
// truncated, as a stub resolver does.
func queryDNS(ctx context.Context, q agent.DNSQuery) (agent.DNSAnswer, error) {
	typ, ok := dnsTypes[strings.ToUpper(q.Type)]
	if !ok {
		return agent.DNSAnswer{}, fmt.Errorf("%w: unknown DNS type %q", agent.ErrBadProbe, q.Type)
	}
	name, err := dnsmessage.NewName(q.Name)
	if err != nil || !strings.HasSuffix(q.Name, ".") {
		return agent.DNSAnswer{}, fmt.Errorf("%w: %q is not a fully qualified name", agent.ErrBadProbe, q.Name)
	}
	if _, _, err := net.SplitHostPort(q.Server); err != nil {
		return agent.DNSAnswer{}, fmt.Errorf("%w: server %q: %v", agent.ErrBadProbe, q.Server, err)
	}
	if q.Timeout <= 0 {
		q.Timeout = 2 * time.Second
	}
	id := uint16(rand.Uint32())
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: typ, Class: dnsmessage.ClassINET}},
	}
	packed, err := msg.Pack()
	if err != nil {
		return agent.DNSAnswer{}, fmt.Errorf("%w: %v", agent.ErrBadProbe, err)
	}
	ctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	start := time.Now()
	reply, err := exchangeUDP(ctx, q.Server, packed, id)
	tcp := false
	if err == nil && reply.Truncated {
		tcp = true
		reply, err = exchangeTCP(ctx, q.Server, packed, id)
	}
	ans := agent.DNSAnswer{Latency: time.Since(start), TCP: tcp}
	if err != nil {
		ans.Error = dialError(err)
		return ans, nil
	}
	ans.Rcode = rcodeNames[reply.RCode]
	if ans.Rcode == "" {
		ans.Rcode = fmt.Sprintf("RCODE%d", reply.RCode)
	}
	for _, r := range reply.Answers {
		ans.Answers = append(ans.Answers, record(r))
	}
	return ans, nil
}

func exchangeUDP(ctx context.Context, server string, query []byte, id uint16) (dnsmessage.Message, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return dnsmessage.Message{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(query); err != nil {
		return dnsmessage.Message{}, ctxErr(ctx, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return dnsmessage.Message{}, ctxErr(ctx, err)
		}
		var m dnsmessage.Message
		if m.Unpack(buf[:n]) == nil && m.ID == id && m.Response {
			return m, nil // anything else is a stray datagram: keep waiting
		}
	}
}

func exchangeTCP(ctx context.Context, server string, query []byte, id uint16) (dnsmessage.Message, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return dnsmessage.Message{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	framed := binary.BigEndian.AppendUint16(nil, uint16(len(query)))
	if _, err := c.Write(append(framed, query...)); err != nil {
		return dnsmessage.Message{}, ctxErr(ctx, err)
	}
	var size [2]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return dnsmessage.Message{}, ctxErr(ctx, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return dnsmessage.Message{}, ctxErr(ctx, err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf); err != nil {
		return m, fmt.Errorf("malformed answer: %w", err)
	}
	if m.ID != id {
		return m, errors.New("answer with another query's id")
	}
	return m, nil
}

func record(r dnsmessage.Resource) agent.DNSRecord {
	rec := agent.DNSRecord{Name: r.Header.Name.String(), Type: strings.TrimPrefix(r.Header.Type.String(), "Type"), TTL: r.Header.TTL}
	switch b := r.Body.(type) {
	case *dnsmessage.AResource:
		rec.Data = net.IP(b.A[:]).String()
	case *dnsmessage.AAAAResource:
		rec.Data = net.IP(b.AAAA[:]).String()
	case *dnsmessage.CNAMEResource:
		rec.Data = b.CNAME.String()
	case *dnsmessage.PTRResource:
		rec.Data = b.PTR.String()
	case *dnsmessage.SRVResource:
		rec.Data = fmt.Sprintf("%d %d %d %s", b.Priority, b.Weight, b.Port, b.Target)
	case *dnsmessage.TXTResource:
		rec.Data = strings.Join(b.TXT, " ")
	default:
		rec.Data = r.Body.GoString()
	}
	return rec
}

// probe connects to req.Address, then sends the HTTP request if asked.
func probe(ctx context.Context, req agent.ProbeRequest) (agent.ProbeResult, error) {
	if _, _, err := net.SplitHostPort(req.Address); err != nil {
		return agent.ProbeResult{}, fmt.Errorf("%w: address %q: %v", agent.ErrBadProbe, req.Address, err)
	}
	if req.Timeout <= 0 {
		req.Timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	var d net.Dialer
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", req.Address)
	res := agent.ProbeResult{Connect: time.Since(start)}
	if err != nil {
		res.Error = dialError(err)
		return res, nil
	}
	defer c.Close()
	res.Connected, res.LocalAddress = true, c.LocalAddr().String()
	if req.HTTP == nil {
		return res, nil
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	status, latency, err := httpExchange(c, req)
	res.HTTPStatus, res.HTTPLatency = status, latency
	if err != nil {
		res.HTTPError = dialError(ctxErr(ctx, err))
	}
	return res, nil
}

// httpExchange sends one request over c and reads the answer's head.
func httpExchange(c net.Conn, req agent.ProbeRequest) (int, time.Duration, error) {
	method, path, host := req.HTTP.Method, req.HTTP.Path, req.HTTP.Host
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = req.Address
	}
	hr, err := http.NewRequest(method, "http://"+host+path, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", agent.ErrBadProbe, err)
	}
	hr.Header.Set("User-Agent", "tether-trace")
	hr.Close = true
	start := time.Now()
	if err := hr.Write(c); err != nil {
		return 0, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), hr)
	latency := time.Since(start)
	if err != nil {
		return 0, latency, err
	}
	resp.Body.Close()
	return resp.StatusCode, latency, nil
}

// ctxErr reports the context's deadline instead of the deadline it set on
// a connection.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// dialError names a network failure the way people talk about it.
func dialError(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by peer"
	default:
		return err.Error()
	}
}
