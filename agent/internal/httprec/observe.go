package httprec

import (
	"net"

	"github.com/tetherkube/tether/tunnel"
)

// Join joins a caller's connection to upstream (the app, or a tunnel
// stream to the laptop) like tunnel.Join, with rc watching both ways, and
// ends rc when both directions are done.
//
// The caller's bytes are noted (copied) just before they go upstream and
// parsed after, and the answers are parsed after they went to the caller:
// an answer is never parsed before its request, and parsing adds no wait
// to either direction.
func Join(caller, upstream net.Conn, rc *Conn) (toUpstream, toCaller int64, err error) {
	toUpstream, toCaller, err = tunnel.Join(&tap{Conn: caller, seen: rc.FromServer}, &tap{Conn: upstream, note: rc.QueueClient, seen: func([]byte) { rc.ParseClient() }})
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
