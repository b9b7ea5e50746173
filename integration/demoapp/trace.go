package demoapp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// requestSteps records how far a request got: a request that fails says
// which step it was in (the name's lookup, the connect to which address,
// the wait for the answer), so a test's hung request tells DNS from a
// dead endpoint.
type requestSteps struct {
	start time.Time
	mu    sync.Mutex
	steps []string
	now   string // the step under way, "" when none
}

func newRequestSteps(ctx context.Context) (*requestSteps, context.Context) {
	s := &requestSteps{start: time.Now()}
	return s, httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		DNSStart: func(i httptrace.DNSStartInfo) { s.begin("looking up " + i.Host) },
		DNSDone: func(i httptrace.DNSDoneInfo) {
			if i.Err != nil {
				s.done(fmt.Sprintf("lookup failed: %v", i.Err))
				return
			}
			addrs := make([]string, len(i.Addrs))
			for n, a := range i.Addrs {
				addrs[n] = a.String()
			}
			s.done("looked up: " + strings.Join(addrs, ","))
		},
		ConnectStart: func(_, addr string) { s.begin("connecting to " + addr) },
		ConnectDone: func(_, addr string, err error) {
			if err != nil {
				s.done(fmt.Sprintf("connect to %s failed: %v", addr, err))
				return
			}
			s.done("connected to " + addr)
		},
		TLSHandshakeStart: func() { s.begin("TLS handshake") },
		TLSHandshakeDone:  func(tls.ConnectionState, error) { s.done("TLS handshake done") },
		WroteRequest:      func(httptrace.WroteRequestInfo) { s.begin("waiting for the answer") },
		GotFirstResponseByte: func() {
			s.done("answered")
		},
	})
}

func (s *requestSteps) at() string {
	return time.Since(s.start).Round(time.Millisecond).String()
}

func (s *requestSteps) begin(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = step + " since " + s.at()
}

func (s *requestSteps) done(step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, step+" at "+s.at())
	s.now = ""
}

// String lists the steps done and the one under way.
func (s *requestSteps) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.steps
	if s.now != "" {
		all = append(all[:len(all):len(all)], s.now)
	}
	if len(all) == 0 {
		return "no step started"
	}
	return strings.Join(all, "; ")
}
