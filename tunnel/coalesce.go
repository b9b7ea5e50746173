package tunnel

import (
	"encoding/binary"
	"net"
)

// yamux's send loop writes each data frame as two Writes: the 12-byte
// header, then the body. Over a port-forward every Write becomes a message
// of its own through the API server and the kubelet, so a small request
// costs two messages each way. coalescingConn holds a data frame's header
// back and sends it with its body in one Write.
//
// Frame header (yamux spec.md): version(1) type(1) flags(2) stream(4) length(4).
const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0
)

type coalescingConn struct {
	net.Conn
	// buf holds a held-back header followed by room for the body; only the
	// session's send loop writes, so no lock is needed.
	buf  []byte
	held bool
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, buf: make([]byte, 0, 64<<10)}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		c.buf = append(c.buf[:yamuxHeaderLen], p...)
		if _, err := c.Conn.Write(c.buf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderLen && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		// A data header whose body comes in the next Write.
		c.buf = append(c.buf[:0], p...)
		c.held = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}
