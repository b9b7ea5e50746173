package netns

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// listeners reads a /proc/net/tcp or tcp6 table and returns the local
// addresses of the sockets in LISTEN state.
func listeners(r io.Reader) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		host, port, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			continue
		}
		b, err := hex.DecodeString(host)
		if err != nil || (len(b) != 4 && len(b) != 16) {
			continue
		}
		// The kernel prints each 32-bit word in host (little-endian) order.
		for i := 0; i < len(b); i += 4 {
			binary.BigEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(b[i:]))
		}
		a, _ := netip.AddrFromSlice(b)
		out = append(out, netip.AddrPortFrom(a, uint16(p)))
	}
	return out
}

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
