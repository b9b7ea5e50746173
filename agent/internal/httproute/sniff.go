package httproute

import (
	"io"
	"net"
	"time"
)

type kind int

const (
	kindHTTP kind = iota
	kindTLS
	kindOther
)

// sniff reads the caller's first bytes, until they tell cleartext HTTP
// (a request line's method, or HTTP/2's preface) from anything else, or
// wait exceeds. It returns what it read, to be replayed.
func sniff(c net.Conn, wait time.Duration) ([]byte, kind) {
	buf := make([]byte, 0, 64)
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	for {
		if k, done := classify(buf); done {
			return buf, k
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if k, done := classify(buf); done {
				return buf, k
			}
			return buf, kindOther
		}
		if len(buf) == cap(buf) {
			k, _ := classify(buf)
			return buf, k
		}
	}
}

// classify decides from the first bytes; done is false while more bytes
// could change the answer.
func classify(b []byte) (kind, bool) {
	if len(b) == 0 {
		return kindOther, false
	}
	if b[0] == 0x16 { // a TLS handshake record
		return kindTLS, true
	}
	// An HTTP/1 request line: a method (uppercase letters, at most 20), then
	// a space.
	for i, ch := range b {
		switch {
		case ch == ' ' && i > 0:
			// HTTP/2's preface starts as a request line of method PRI: the
			// server tells the two apart.
			return kindHTTP, true
		case ch >= 'A' && ch <= 'Z' && i < 20:
		default:
			return kindOther, true
		}
	}
	return kindOther, false
}

// prefixConn replays the sniffed bytes before the rest of the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// CloseWrite half-closes when the connection can.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}
