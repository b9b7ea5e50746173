package httprec

import (
	"net"
	"sync"

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

// Tap records upstream, a connection the agent itself speaks HTTP over
// (the router of a filtered port opens them): what is written to it is
// the request side, what is read from it the answers. rc ends when the
// connection is closed.
func Tap(upstream net.Conn, rc *Conn) net.Conn {
	return &upstreamTap{Conn: upstream, rc: rc}
}

type upstreamTap struct {
	net.Conn
	rc   *Conn
	once sync.Once
}

func (t *upstreamTap) Write(p []byte) (int, error) {
	t.rc.BeforeClientWrite()
	n, err := t.Conn.Write(p)
	t.rc.AfterClientWrite(p[:n])
	return n, err
}

func (t *upstreamTap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.rc.FromServer(p[:n])
	}
	return n, err
}

func (t *upstreamTap) Close() error {
	err := t.Conn.Close()
	t.once.Do(t.rc.Close)
	return err
}
