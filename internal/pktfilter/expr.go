package pktfilter

import (
	"fmt"
	"net/netip"
)

type all struct{}

func (all) Match(Packet) bool { return true }
func (all) String() string    { return "" }

type and struct{ l, r Expr }

func (e and) Match(p Packet) bool { return e.l.Match(p) && e.r.Match(p) }
func (e and) String() string      { return fmt.Sprintf("(%s and %s)", e.l, e.r) }

type or struct{ l, r Expr }

func (e or) Match(p Packet) bool { return e.l.Match(p) || e.r.Match(p) }
func (e or) String() string      { return fmt.Sprintf("(%s or %s)", e.l, e.r) }

type not struct{ e Expr }

func (e not) Match(p Packet) bool { return !e.e.Match(p) }
func (e not) String() string      { return fmt.Sprintf("(not %s)", e.e) }

type protoIs struct{ p Proto }

func (e protoIs) Match(p Packet) bool { return p.Proto == e.p }
func (e protoIs) String() string      { return string(e.p) }

type family struct{ v6 bool }

func (e family) Match(p Packet) bool {
	return p.Src.IsValid() && p.Src.Unmap().Is6() == e.v6
}
func (e family) String() string {
	if e.v6 {
		return "ip6"
	}
	return "ip"
}

func either(d Dir, src, dst bool) bool {
	switch d {
	case Src:
		return src
	case Dst:
		return dst
	default:
		return src || dst
	}
}

func prefix(d Dir) string {
	if d == Either {
		return ""
	}
	return string(d) + " "
}

type host struct {
	d Dir
	a netip.Addr
}

func (e host) Match(p Packet) bool {
	return either(e.d, p.Src.Unmap() == e.a.Unmap(), p.Dst.Unmap() == e.a.Unmap())
}
func (e host) String() string { return prefix(e.d) + "host " + e.a.String() }

type network struct {
	d Dir
	n netip.Prefix
}

func (e network) Match(p Packet) bool {
	return either(e.d, e.n.Contains(p.Src.Unmap()), e.n.Contains(p.Dst.Unmap()))
}
func (e network) String() string { return prefix(e.d) + "net " + e.n.String() }

type portRange struct {
	d      Dir
	lo, hi uint16
}

func (e portRange) Match(p Packet) bool {
	if p.Proto != TCP && p.Proto != UDP {
		return false
	}
	in := func(x uint16) bool { return x >= e.lo && x <= e.hi }
	return either(e.d, in(p.SrcPort), in(p.DstPort))
}
func (e portRange) String() string {
	if e.lo == e.hi {
		return fmt.Sprintf("%sport %d", prefix(e.d), e.lo)
	}
	return fmt.Sprintf("%sportrange %d-%d", prefix(e.d), e.lo, e.hi)
}
