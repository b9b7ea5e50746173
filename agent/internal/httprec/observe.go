package httprec

import (
	"net"

	"github.com/tetherkube/tether/tunnel"
)

// Join joins a caller's connection to upstream (the app, or a tunnel
// stream to the laptop) like tunnel.Join, with rc watching both ways, and
// ends rc when both directions are done.
//
// The caller's bytes are shown to rc just before they go upstream, so a
// response can never be seen before its request; the answers are shown
// after they went to the caller, so watching them adds no wait to the
// response path.
func Join(caller, upstream net.Conn, rc *Conn) (toUpstream, toCaller int64, err error) {
	toUpstream, toCaller, err = tunnel.Join(&tap{Conn: caller, seen: rc.FromServer}, &tap{Conn: upstream, seen: rc.FromClient, before: true})
	rc.Close()
	return toUpstream, toCaller, err
}

// tap reports what is written to a connection.
type tap struct {
	net.Conn
	seen   func([]byte)
	before bool
}

func (t *tap) Write(p []byte) (int, error) {
	if t.before {
		t.seen(p)
		return t.Conn.Write(p)
	}
	n, err := t.Conn.Write(p)
	if n > 0 {
		t.seen(p[:n])
	}
	return n, err
}

// CloseWrite half-closes when the connection can, so tunnel.Join keeps its
// half-close semantics through the tap.
func (t *tap) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}
