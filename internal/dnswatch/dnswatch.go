// Package dnswatch pairs the DNS queries and answers seen in a pod's
// traffic: each query with its answer (by client address, port and query
// id), the latency between them, the rcode and the answers, and flags
// search-list expansion storms (several NXDOMAIN answers for expansions of
// one name before it resolves).
package dnswatch

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Exchange is one query and its answer, or a query still unanswered.
type Exchange struct {
	Client   netip.AddrPort `json:"client"`
	Server   netip.AddrPort `json:"server"`
	ID       uint16         `json:"id"`
	Name     string         `json:"name"`
	Type     string         `json:"type"`
	Sent     time.Time      `json:"sent"`
	Answered bool           `json:"answered"`
	Latency  time.Duration  `json:"latencyNanoseconds,omitempty"`
	Rcode    string         `json:"rcode,omitempty"`
	Answers  []string       `json:"answers,omitempty"`
	// Storm is set on the answer that ended a search-list expansion storm:
	// how many NXDOMAIN answers for expansions of the same name came before.
	Storm int `json:"storm,omitempty"`
}

func (e Exchange) String() string {
	if !e.Answered {
		return fmt.Sprintf("%s %s %s -> %s: no answer", e.Client, e.Type, e.Name, e.Server)
	}
	s := fmt.Sprintf("%s %s %s -> %s", e.Client, e.Type, e.Name, e.Rcode)
	if len(e.Answers) > 0 {
		s += " " + strings.Join(e.Answers, ",")
	}
	s += " in " + e.Latency.Round(time.Microsecond).String()
	if e.Storm > 0 {
		s += fmt.Sprintf(" (after %d NXDOMAIN from the search list)", e.Storm)
	}
	return s
}

type key struct {
	client netip.AddrPort
	id     uint16
}

// Tracker pairs queries with answers. It is not safe for concurrent use.
type Tracker struct {
	// Timeout is how long a query waits for its answer before Expire
	// reports it unanswered.
	Timeout time.Duration

	pending map[key]*Exchange
	// nxdomain counts, per client address and first label, the NXDOMAIN
	// answers not yet followed by a success.
	nxdomain map[string]int
}

// NewTracker returns a Tracker that gives up on a query after timeout.
func NewTracker(timeout time.Duration) *Tracker {
	return &Tracker{Timeout: timeout, pending: map[key]*Exchange{}, nxdomain: map[string]int{}}
}

// Observe takes one DNS message seen at time at from src to dst. It returns
// the exchange an answer completes, or nil.
func (t *Tracker) Observe(at time.Time, src, dst netip.AddrPort, msg *layers.DNS) *Exchange {
	if !msg.QR {
		if len(msg.Questions) == 0 {
			return nil
		}
		q := msg.Questions[0]
		t.pending[key{src, msg.ID}] = &Exchange{Client: src, Server: dst, ID: msg.ID,
			Name: string(q.Name), Type: q.Type.String(), Sent: at}
		return nil
	}
	k := key{dst, msg.ID}
	ex, ok := t.pending[k]
	if !ok {
		return nil // an answer whose query we did not see
	}
	delete(t.pending, k)
	ex.Answered, ex.Latency, ex.Rcode = true, at.Sub(ex.Sent), msg.ResponseCode.String()
	for _, a := range msg.Answers {
		switch {
		case a.IP != nil:
			ex.Answers = append(ex.Answers, a.IP.String())
		case len(a.CNAME) > 0:
			ex.Answers = append(ex.Answers, "CNAME "+string(a.CNAME))
		}
	}
	stormKey := ex.Client.Addr().String() + " " + firstLabel(ex.Name)
	if msg.ResponseCode == layers.DNSResponseCodeNXDomain {
		t.nxdomain[stormKey]++
	} else {
		if n := t.nxdomain[stormKey]; n >= 2 {
			ex.Storm = n
		}
		delete(t.nxdomain, stormKey)
	}
	return ex
}

// Expire returns the queries unanswered for longer than Timeout at now.
func (t *Tracker) Expire(now time.Time) []Exchange {
	var out []Exchange
	for k, ex := range t.pending {
		if now.Sub(ex.Sent) > t.Timeout {
			out = append(out, *ex)
			delete(t.pending, k)
		}
	}
	return out
}

func firstLabel(name string) string {
	l, _, _ := strings.Cut(name, ".")
	return l
}
