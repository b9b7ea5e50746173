package portforward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
)

// frameConn is the net.Conn that spdystream runs over when the port-forward
// is tunnelled through a WebSocket: bytes go out as binary messages, and
// bytes read are the messages' contents back to back.
//
// spdystream writes one SPDY frame as several Writes (a data frame as its
// stream id, its flags and length, then its data; a control frame as a
// field at a time). client-go's TunnelingConnection makes each Write a
// message of its own, i.e. a WebSocket frame, a TLS record and a write
// syscall here, and as many reads and forwards in the API server: three
// per data frame. frameConn follows the SPDY framing instead and puts one
// SPDY frame in one message: a message is opened at a frame's first byte,
// filled as the pieces come, and flushed the moment the frame's last byte
// is written, so no byte waits for a later Write.
//
// SPDY/3 frames (draft-mbelshe-httpbis-spdy-00, section 2.2) all start
// with an 8-byte header whose last 24 bits are the length of what follows:
// a control frame is 1<<31|version<<16|type, flags<<24|length; a data
// frame is stream-id (high bit 0), flags<<24|length.
type frameConn struct {
	ws *gwebsocket.Conn

	// Writes: only one at a time (spdystream writes under its own lock).
	wmu  sync.Mutex
	msg  io.WriteCloser // the open message, nil between frames
	hdr  [spdyHeaderLen]byte
	hdrN int // header bytes of the current frame written so far
	left int // bytes of the current frame's payload still to come

	// Reads: the message being read.
	rmu sync.Mutex
	cur io.Reader

	closeOnce sync.Once
}

const spdyHeaderLen = 8

func newFrameConn(ws *gwebsocket.Conn) *frameConn { return &frameConn{ws: ws} }

// Write writes p, which continues the SPDY frame stream, closing a message
// at the end of each frame in p.
func (c *frameConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		if c.msg == nil {
			w, err := c.ws.NextWriter(gwebsocket.BinaryMessage)
			if err != nil {
				return n, err
			}
			c.msg = w
		}
		var k int
		if c.hdrN < spdyHeaderLen {
			k = copy(c.hdr[c.hdrN:], p)
			c.hdrN += k
			if c.hdrN == spdyHeaderLen {
				c.left = int(binary.BigEndian.Uint32(c.hdr[4:]) & 0xffffff)
			}
		} else {
			k = min(c.left, len(p))
			c.left -= k
		}
		if _, err := c.msg.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
		if c.hdrN == spdyHeaderLen && c.left == 0 {
			// The frame is complete: flush it as one message.
			err := c.msg.Close()
			c.msg, c.hdrN = nil, 0
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Read reads the messages' contents as one stream.
func (c *frameConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *gwebsocket.CloseError
				if errors.As(err, &ce) && ce.Code == gwebsocket.CloseNormalClosure {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != gwebsocket.BinaryMessage {
				return 0, fmt.Errorf("port-forward: unexpected WebSocket message type %d", typ)
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Close tells the server the connection ends normally, then closes it.
func (c *frameConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		msg := gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, "")
		werr := c.ws.WriteControl(gwebsocket.CloseMessage, msg, time.Now().Add(time.Second))
		err = c.ws.Close()
		if err == nil && !errors.Is(werr, gwebsocket.ErrCloseSent) {
			err = werr
		}
	})
	return err
}

func (c *frameConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *frameConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *frameConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *frameConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

func (c *frameConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
