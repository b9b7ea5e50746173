package httprec

import (
	"net"

	"github.com/tetherkube/tether/tunnel"
)

// Join joins a caller's connection to upstream (the app, or a tunnel
// stream to the laptop) like tunnel.Join, with rc watching both ways, and
// ends rc when both directions are done.
//
// Both directions are parsed after the bytes went on, so parsing adds no
// wait to either; an answer that comes while its request is still being
// written is held until the request is parsed (Conn.BeforeClientWrite).
func Join(caller, upstream net.Conn, rc *Conn) (toUpstream, toCaller int64, err error) {
	toUpstream, toCaller, err = tunnel.Join(&tap{Conn: caller, seen: rc.FromServer}, &tap{Conn: upstream, note: func([]byte) { rc.BeforeClientWrite() }, seen: rc.AfterClientWrite})
	rc.Close()
	return toUpstream, toCaller, err
}

// tap reports what is written to a connection: to note before the write
// (when set), and to seen after.
type tap struct {
	net.Conn
	note func([]byte)
	seen func([]byte)
}

func (t *tap) Write(p []byte) (int, error) {
	if t.note != nil {
		t.note(p)
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
