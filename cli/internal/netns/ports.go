package netns

import (
	"net/netip"
)

// loopbackPorts reduces listeners to what the loopback bridge mirrors:
// the ports listening on a loopback or the wildcard address, by family
// (true = IPv6).
func loopbackPorts(ls []netip.AddrPort) map[portKey]bool {
	out := map[portKey]bool{}
	for _, l := range ls {
		a := l.Addr()
		if a.Is4In6() {
			a = a.Unmap()
		}
		if !a.IsLoopback() && !a.IsUnspecified() {
			continue
		}
		out[portKey{v6: a.Is6(), port: l.Port()}] = true
		if a.Is6() && a.IsUnspecified() {
			// A dual-stack wildcard takes IPv4 too.
			out[portKey{port: l.Port()}] = true
		}
	}
	return out
}

type portKey struct {
	v6   bool
	port uint16
}
