// Package pktfilter parses the common part of tcpdump's filter language
// (host, net, port, portrange, tcp/udp/icmp/ip/ip6, src/dst, and/or/not,
// parentheses) into an expression tree, and matches packets against it.
// The CLI parses a filter before it changes anything, so a bad filter is
// reported with the offending word; the agent matches (and, later, compiles
// the tree to a kernel BPF program).
package pktfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Expr is a parsed filter.
type Expr interface {
	Match(p Packet) bool
	String() string
}

// Packet is what a filter looks at.
type Packet struct {
	Src, Dst         netip.Addr
	Proto            Proto
	SrcPort, DstPort uint16 // 0 when the protocol has no ports
}

// Proto is a transport protocol.
type Proto string

// Protocols a filter can name.
const (
	TCP  Proto = "tcp"
	UDP  Proto = "udp"
	ICMP Proto = "icmp"
)

// Dir restricts a primitive to the source, the destination, or either.
type Dir string

const (
	Either Dir = ""
	Src    Dir = "src"
	Dst    Dir = "dst"
)

// Limits on what Parse accepts: the filter comes from users and is parsed
// again by the agent, so its size and nesting are bounded before anything
// recurses over it.
const (
	// MaxLen is the longest filter accepted, in bytes.
	MaxLen = 16 << 10
	// MaxDepth is the deepest nesting of parentheses and not/! accepted.
	MaxDepth = 100
)

// ErrTooLarge means the filter is longer or nests deeper than the limits.
var ErrTooLarge = errors.New("filter too large")

// SyntaxError points at the word that broke the filter.
type SyntaxError struct {
	Filter string
	Pos    int // byte offset of the offending word
	Word   string
	Msg    string
	// Err is ErrTooLarge for a filter over the limits, else nil.
	Err error
}

func (e *SyntaxError) Error() string {
	word := strconv.Quote(short(e.Word, 40))
	if e.Word == "" {
		word = "the end"
	}
	// Show at most 60 bytes each side of the position.
	from, to := max(e.Pos-60, 0), min(e.Pos+60, len(e.Filter))
	pre, post := "", ""
	if from > 0 {
		pre = "..."
	}
	if to < len(e.Filter) {
		post = "..."
	}
	return fmt.Sprintf("filter: %s at %s:\n  %s%s%s\n  %s^", e.Msg, word, pre, e.Filter[from:to], post, strings.Repeat(" ", len(pre)+e.Pos-from))
}

func (e *SyntaxError) Unwrap() error { return e.Err }

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

type token struct {
	text string
	pos  int
}

func tokenize(s string) []token {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')' || c == '!':
			out = append(out, token{string(c), i})
			i++
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||"):
			out = append(out, token{s[i : i+2], i})
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n()!", rune(s[j])) && !strings.HasPrefix(s[j:], "&&") && !strings.HasPrefix(s[j:], "||") {
				j++
			}
			out = append(out, token{s[i:j], i})
			i = j
		}
	}
	return out
}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int // nesting of parentheses and not
}

// Parse parses a filter. An empty filter matches every packet. A filter
// longer than MaxLen or nested deeper than MaxDepth is an error.
func Parse(filter string) (Expr, error) {
	if len(filter) > MaxLen {
		return nil, &SyntaxError{Filter: filter, Pos: MaxLen, Word: filter[MaxLen:min(MaxLen+8, len(filter))], Err: ErrTooLarge,
			Msg: fmt.Sprintf("the filter is longer than %d bytes (%d)", MaxLen, len(filter))}
	}
	p := &parser{src: filter, toks: tokenize(filter)}
	if len(p.toks) == 0 {
		return all{}, nil
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, p.errf("expected and, or, or the end of the filter")
	}
	return e, nil
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i].text)
	}
	return ""
}

func (p *parser) errf(format string, args ...any) error {
	pos, word := len(p.src), ""
	if p.i < len(p.toks) {
		pos, word = p.toks[p.i].pos, p.toks[p.i].text
	}
	return &SyntaxError{Filter: p.src, Pos: pos, Word: word, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for w := p.peek(); w == "or" || w == "||"; w = p.peek() {
		p.i++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = or{l, r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for w := p.peek(); w == "and" || w == "&&"; w = p.peek() {
		p.i++
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = and{l, r}
	}
	return l, nil
}

// enter counts one level of nesting, failing past MaxDepth; leave undoes it.
func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		err := p.errf("the filter nests deeper than %d levels of parentheses and not", MaxDepth)
		err.(*SyntaxError).Err = ErrTooLarge
		return err
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) not() (Expr, error) {
	if w := p.peek(); w == "not" || w == "!" {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.i++
		e, err := p.not()
		if err != nil {
			return nil, err
		}
		return not{e}, nil
	}
	return p.primary()
}

const expected = "expected host, net, port, portrange, src, dst, tcp, udp, icmp, ip, ip6, not or '('"

func (p *parser) primary() (Expr, error) {
	switch w := p.peek(); w {
	case "(":
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.i++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, p.errf("expected ')'")
		}
		p.i++
		return e, nil
	case "tcp", "udp", "icmp":
		p.i++
		proto := Proto(w)
		// "tcp port 80", "udp src port 53": a port primitive scoped to the protocol.
		if n := p.peek(); n == "port" || n == "portrange" || ((n == "src" || n == "dst") && p.i+1 < len(p.toks) &&
			strings.HasPrefix(strings.ToLower(p.toks[p.i+1].text), "port")) {
			if proto == ICMP {
				return nil, p.errf("icmp has no ports")
			}
			e, err := p.directional()
			if err != nil {
				return nil, err
			}
			return and{protoIs{proto}, e}, nil
		}
		return protoIs{proto}, nil
	case "ip":
		p.i++
		return family{v6: false}, nil
	case "ip6":
		p.i++
		return family{v6: true}, nil
	case "":
		return nil, p.errf(expected)
	default:
		return p.directional()
	}
}

// directional parses [src|dst] (host ADDR | net CIDR | port N | portrange N-M | ADDR).
func (p *parser) directional() (Expr, error) {
	dir := Either
	if w := p.peek(); w == "src" || w == "dst" {
		dir = Dir(w)
		p.i++
		if n := p.peek(); n == "or" || n == "and" {
			return nil, p.errf("'src or dst' and 'src and dst' are not supported; write (src host X or dst host X)")
		}
	}
	kind := p.peek()
	switch kind {
	case "host", "net", "port", "portrange":
		p.i++
	default:
		// A bare address after src/dst means host: "src 10.0.0.1".
		if _, err := netip.ParseAddr(kind); err == nil && dir != Either {
			kind = "host"
		} else {
			return nil, p.errf(expected)
		}
	}
	if p.i >= len(p.toks) {
		return nil, p.errf("%s needs a value", kind)
	}
	val := p.toks[p.i].text
	switch kind {
	case "host":
		a, err := netip.ParseAddr(val)
		if err != nil {
			return nil, p.errf("host needs an IP address (names are not resolved)")
		}
		p.i++
		return host{dir, a}, nil
	case "net":
		n, err := netip.ParsePrefix(val)
		if err != nil {
			return nil, p.errf("net needs a CIDR such as 10.42.0.0/16")
		}
		p.i++
		return network{dir, n.Masked()}, nil
	case "port":
		n, err := portNumber(val)
		if err != nil {
			return nil, p.errf("%v", err)
		}
		p.i++
		return portRange{dir, n, n}, nil
	default: // portrange
		lo, hi, ok := strings.Cut(val, "-")
		a, err1 := portNumber(lo)
		b, err2 := portNumber(hi)
		if !ok || err1 != nil || err2 != nil || a > b {
			return nil, p.errf("portrange needs LOW-HIGH, e.g. 8000-8100")
		}
		p.i++
		return portRange{dir, a, b}, nil
	}
}

func portNumber(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port needs a number from 0 to 65535 (service names are not resolved)")
	}
	return uint16(n), nil
}
