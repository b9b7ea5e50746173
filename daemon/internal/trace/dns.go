package trace

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/internal/resolvconf"
)

// stormAt is the count of failed queries before an answer from which the
// DNS step warns about search-list expansion.
const stormAt = 2

// lookupName is the name the source pod would use for the destination, or
// "" when the destination is addressed without DNS.
func (s *state) lookupName() string {
	switch s.target.Kind {
	case KindName:
		return s.target.Host
	case KindService:
		if s.target.Namespace == s.src.Namespace {
			return s.target.Name
		}
		return s.target.Name + "." + s.target.Namespace
	}
	return ""
}

// dns sends, from the pod, each query its resolver would send for the name,
// in order, until one answers with addresses.
func (tr *Tracer) dns(ctx context.Context, s *state) (Step, error) {
	name := s.lookupName()
	if name == "" {
		if s.target.Kind == KindIP {
			s.addresses = []string{s.target.Host}
		}
		return skipped("no name to resolve: the destination is an address"), nil
	}
	raw, err := tr.Prober.ResolvConf(ctx)
	if err != nil {
		return Step{}, err
	}
	conf, err := resolvconf.Parse(bytes.NewReader(raw))
	if err != nil {
		return Step{Status: Broken, Summary: fmt.Sprintf("the pod's /etc/resolv.conf is unusable: %v", err)}, nil
	}
	res := &DNSResult{Name: name, ResolvConf: conf}
	step := Step{DNS: res}
	step.Details = append(step.Details, fmt.Sprintf("resolv.conf: nameserver %s; search %s; ndots %d",
		strings.Join(conf.Nameservers, ", "), strings.Join(conf.Search, " "), conf.Ndots))
	if len(conf.Nameservers) == 0 {
		step.Status, step.Summary = Broken, "the pod's /etc/resolv.conf names no nameserver"
		return step, nil
	}
	failed := 0
	for _, cand := range conf.Candidates(name) {
		q, addrs := tr.query(ctx, conf.Nameservers, cand)
		for _, qq := range q {
			res.Queries = append(res.Queries, qq)
			step.Details = append(step.Details, queryLine(qq))
		}
		if len(addrs) > 0 {
			res.Answered, res.Addresses = cand, addrs
			break
		}
		failed++
	}
	if res.Answered == "" {
		step.Status, step.Summary = Broken, noAnswer(name, res.Queries)
		return step, nil
	}
	s.addresses, s.answeredName = res.Addresses, res.Answered
	step.Status = OK
	step.Summary = fmt.Sprintf("%s resolves to %s as %s (%d %s)", name, strings.Join(res.Addresses, ", "), res.Answered,
		len(res.Queries), plural(len(res.Queries), "query"))
	if failed >= stormAt {
		step.Status = Warn
		step.Details = append(step.Details, fmt.Sprintf("%d queries failed before the answer: with ndots %d the resolver tries the search list first; "+
			"write the name fully qualified (%q) to send one query", failed, conf.Ndots, res.Answered))
	}
	return step, nil
}

// query asks the nameservers in order, moving on only when one does not
// answer, and returns the queries sent and the addresses found.
func (tr *Tracer) query(ctx context.Context, servers []string, name string) ([]Query, []string) {
	var sent []Query
	for _, ns := range servers {
		server := net.JoinHostPort(ns, "53")
		a, err := tr.Prober.QueryDNS(ctx, agent.DNSQuery{Server: server, Name: name, Type: "A", Timeout: tr.Timeout})
		q := Query{Name: name, Type: "A", Server: server, Rcode: a.Rcode, Answers: a.Answers, Error: a.Error, Millis: millis(a.Latency)}
		if err != nil {
			q.Error = err.Error()
		}
		sent = append(sent, q)
		if q.Rcode == "" {
			continue // no answer: the resolver tries the next nameserver
		}
		var addrs []string
		for _, r := range a.Answers {
			if r.Type == "A" || r.Type == "AAAA" {
				addrs = append(addrs, r.Data)
			}
		}
		return sent, addrs
	}
	return sent, nil
}

func queryLine(q Query) string {
	var answers []string
	for _, a := range q.Answers {
		answers = append(answers, a.Type+" "+a.Data)
	}
	outcome := q.Rcode
	if outcome == "" {
		outcome = "no answer (" + q.Error + ")"
	} else if q.Rcode == "NOERROR" && len(answers) == 0 {
		outcome = "NOERROR, no records"
	}
	line := fmt.Sprintf("%s %s @%s -> %s", q.Name, q.Type, q.Server, outcome)
	if len(answers) > 0 {
		line += " " + strings.Join(answers, ", ")
	}
	return line + fmt.Sprintf(" (%s)", durationText(q.Millis))
}

// noAnswer says why nothing resolved.
func noAnswer(name string, queries []Query) string {
	counts := map[string]int{}
	for _, q := range queries {
		key := q.Rcode
		if key == "" {
			key = q.Error
		}
		counts[key]++
	}
	if counts["NXDOMAIN"] == len(queries) {
		return fmt.Sprintf("%s does not exist: NXDOMAIN for all %d names the resolver tries", name, len(queries))
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%s does not resolve: %s", name, strings.Join(parts, ", "))
}

func durationText(ms float64) string {
	return time.Duration(ms * float64(time.Millisecond)).Round(10 * time.Microsecond).String()
}
