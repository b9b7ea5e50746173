package pktfilter

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// ErrTooComplex means the filter compiles to jumps longer than classic BPF
// allows; match it in user space instead.
var ErrTooComplex = errors.New("filter too complex for a kernel BPF program")

// Offsets in an Ethernet frame (no VLAN tag) and its IP headers.
const (
	offEtherType = 12
	offIPv4Proto = 14 + 9
	offIPv4Frag  = 14 + 6
	offIPv4Src   = 14 + 12
	offIPv4Dst   = 14 + 16
	offIPv6Next  = 14 + 6
	offIPv6Src   = 14 + 8
	offIPv6Dst   = 14 + 24
	offIPv6Ports = 14 + 40 // no extension headers
	etherIPv4    = 0x0800
	etherIPv6    = 0x86dd
)

var protoNumbers = map[Proto][2]uint32{TCP: {6, 6}, UDP: {17, 17}, ICMP: {1, 58}} // IPv4, IPv6

// Compile turns e into a classic BPF program over Ethernet frames that
// accepts snaplen bytes of a matching packet and drops the rest. Like
// tcpdump, port primitives match only unfragmented (first-fragment) IPv4
// and IPv6 packets without extension headers.
func Compile(e Expr, snaplen uint32) ([]bpf.Instruction, error) {
	c := &compiler{}
	t, f := c.label(), c.label()
	c.expr(e, t, f)
	c.mark(t)
	c.emit(bpf.RetConstant{Val: snaplen})
	c.mark(f)
	c.emit(bpf.RetConstant{Val: 0})
	return c.resolve()
}

type insn struct {
	op          bpf.Instruction // set for plain instructions
	cond        bpf.JumpTest    // with t, f >= 0: a conditional jump
	val         uint32
	t, f        int
	always      int // >= 0: an unconditional jump to this label
	labelMarker int // >= 0: not an instruction; marks this label here
}

type compiler struct {
	code   []insn
	labels int
}

func (c *compiler) label() int { c.labels++; return c.labels - 1 }
func (c *compiler) mark(l int) {
	c.code = append(c.code, insn{labelMarker: l, t: -1, f: -1, always: -1})
}
func (c *compiler) emit(op bpf.Instruction) {
	c.code = append(c.code, insn{op: op, t: -1, f: -1, always: -1, labelMarker: -1})
}
func (c *compiler) jump(cond bpf.JumpTest, val uint32, t, f int) {
	c.code = append(c.code, insn{cond: cond, val: val, t: t, f: f, always: -1, labelMarker: -1})
}
func (c *compiler) jumpTo(l int) {
	c.code = append(c.code, insn{always: l, t: -1, f: -1, labelMarker: -1})
}

func (c *compiler) resolve() ([]bpf.Instruction, error) {
	pos := map[int]int{}
	n := 0
	for _, in := range c.code {
		if in.labelMarker >= 0 {
			pos[in.labelMarker] = n
			continue
		}
		n++
	}
	var out []bpf.Instruction
	for _, in := range c.code {
		if in.labelMarker >= 0 {
			continue
		}
		here := len(out)
		skip := func(l int) (int, error) {
			s := pos[l] - here - 1
			if s < 0 {
				return 0, fmt.Errorf("pktfilter: backward jump (compiler bug)")
			}
			return s, nil
		}
		switch {
		case in.op != nil:
			out = append(out, in.op)
		case in.always >= 0:
			s, err := skip(in.always)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.Jump{Skip: uint32(s)})
		default:
			st, err1 := skip(in.t)
			sf, err2 := skip(in.f)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			if st > 255 || sf > 255 {
				return nil, ErrTooComplex
			}
			out = append(out, bpf.JumpIf{Cond: in.cond, Val: in.val, SkipTrue: uint8(st), SkipFalse: uint8(sf)})
		}
	}
	return out, nil
}

// ethertype branches to v4 or v6 by the frame's EtherType, else to other.
func (c *compiler) ethertype(v4, v6, other int) {
	next := c.label()
	c.emit(bpf.LoadAbsolute{Off: offEtherType, Size: 2})
	c.jump(bpf.JumpEqual, etherIPv4, v4, next)
	c.mark(next)
	c.jump(bpf.JumpEqual, etherIPv6, v6, other)
}

// expr emits code for e that always ends by jumping to t or f.
func (c *compiler) expr(e Expr, t, f int) {
	switch e := e.(type) {
	case all:
		c.jumpTo(t)
	case and:
		mid := c.label()
		c.expr(e.l, mid, f)
		c.mark(mid)
		c.expr(e.r, t, f)
	case or:
		mid := c.label()
		c.expr(e.l, t, mid)
		c.mark(mid)
		c.expr(e.r, t, f)
	case not:
		c.expr(e.e, f, t)
	case family:
		if e.v6 {
			c.ethertype(f, t, f)
		} else {
			c.ethertype(t, f, f)
		}
	case protoIs:
		v4, v6 := c.label(), c.label()
		c.ethertype(v4, v6, f)
		n := protoNumbers[e.p]
		c.mark(v4)
		c.emit(bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1})
		c.jump(bpf.JumpEqual, n[0], t, f)
		c.mark(v6)
		c.emit(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
		c.jump(bpf.JumpEqual, n[1], t, f)
	case host:
		c.addr(e.d, netip.PrefixFrom(e.a.Unmap(), e.a.Unmap().BitLen()), t, f)
	case network:
		c.addr(e.d, e.n, t, f)
	case portRange:
		c.ports(e, t, f)
	default:
		panic(fmt.Sprintf("pktfilter: cannot compile %T", e))
	}
}

// addr matches the source and/or destination address against prefix.
func (c *compiler) addr(d Dir, prefix netip.Prefix, t, f int) {
	family := c.label()
	if prefix.Addr().Is4() {
		c.ethertype(family, f, f)
	} else {
		c.ethertype(f, family, f)
	}
	c.mark(family)
	srcOff, dstOff := uint32(offIPv4Src), uint32(offIPv4Dst)
	if prefix.Addr().Is6() {
		srcOff, dstOff = offIPv6Src, offIPv6Dst
	}
	switch d {
	case Src:
		c.prefixAt(srcOff, prefix, t, f)
	case Dst:
		c.prefixAt(dstOff, prefix, t, f)
	default:
		tryDst := c.label()
		c.prefixAt(srcOff, prefix, t, tryDst)
		c.mark(tryDst)
		c.prefixAt(dstOff, prefix, t, f)
	}
}

// prefixAt compares the address at off, word by word, with prefix.
func (c *compiler) prefixAt(off uint32, prefix netip.Prefix, t, f int) {
	addr := prefix.Addr().AsSlice()
	bits := prefix.Bits()
	type word struct{ off, val, mask uint32 }
	var words []word
	for i := 0; i < len(addr); i += 4 {
		maskBits := min(max(bits-i*8, 0), 32)
		if maskBits == 0 {
			break
		}
		mask := uint32(0xffffffff) << (32 - maskBits)
		val := uint32(addr[i])<<24 | uint32(addr[i+1])<<16 | uint32(addr[i+2])<<8 | uint32(addr[i+3])
		words = append(words, word{off + uint32(i), val & mask, mask})
	}
	if len(words) == 0 {
		c.jumpTo(t) // a /0 prefix matches every address of the family
		return
	}
	for i, w := range words {
		next := t
		if i < len(words)-1 {
			next = c.label()
		}
		c.emit(bpf.LoadAbsolute{Off: w.off, Size: 4})
		if w.mask != 0xffffffff {
			c.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: w.mask})
		}
		c.jump(bpf.JumpEqual, w.val, next, f)
		if next != t {
			c.mark(next)
		}
	}
}

// ports matches TCP or UDP ports in [lo, hi].
func (c *compiler) ports(e portRange, t, f int) {
	v4, v6, v4tu, v6tu := c.label(), c.label(), c.label(), c.label()
	c.ethertype(v4, v6, f)

	c.mark(v4)
	v4udp := c.label()
	c.emit(bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1})
	c.jump(bpf.JumpEqual, 6, v4tu, v4udp)
	c.mark(v4udp)
	c.jump(bpf.JumpEqual, 17, v4tu, f)
	c.mark(v4tu)
	unfragmented := c.label()
	c.emit(bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2})
	c.jump(bpf.JumpBitsSet, 0x1fff, f, unfragmented)
	c.mark(unfragmented)
	c.emit(bpf.LoadMemShift{Off: 14}) // X = IPv4 header length
	c.portCheck(e, true, 14, t, f)

	c.mark(v6)
	v6udp := c.label()
	c.emit(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
	c.jump(bpf.JumpEqual, 6, v6tu, v6udp)
	c.mark(v6udp)
	c.jump(bpf.JumpEqual, 17, v6tu, f)
	c.mark(v6tu)
	c.portCheck(e, false, offIPv6Ports, t, f)
}

// portCheck loads the source and/or destination port, at base (+X when
// indirect), and checks the range.
func (c *compiler) portCheck(e portRange, indirect bool, base uint32, t, f int) {
	load := func(off uint32) {
		if indirect {
			c.emit(bpf.LoadIndirect{Off: base + off, Size: 2})
		} else {
			c.emit(bpf.LoadAbsolute{Off: base + off, Size: 2})
		}
	}
	inRange := func(t, f int) {
		geLo := c.label()
		c.jump(bpf.JumpGreaterOrEqual, uint32(e.lo), geLo, f)
		c.mark(geLo)
		c.jump(bpf.JumpGreaterThan, uint32(e.hi), f, t)
	}
	switch e.d {
	case Src:
		load(0)
		inRange(t, f)
	case Dst:
		load(2)
		inRange(t, f)
	default:
		tryDst := c.label()
		load(0)
		inRange(t, tryDst)
		c.mark(tryDst)
		load(2)
		inRange(t, f)
	}
}
