package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/tetherkube/tether/tunnel"
)

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	socksVersion   = 5
	methodUserPass = 2
	methodNone     = 0xff
	cmdConnect     = 1
	atypIPv4       = 1
	atypDomain     = 3
	atypIPv6       = 4

	replyOK              = 0
	replyNotAllowed      = 2
	replyCmdUnsupported  = 7
	replyAddrUnsupported = 8
)

// handshakeTimeout bounds a client's greeting and request.
const handshakeTimeout = 30 * time.Second

// ServeSOCKS5 serves SOCKS5 on l until l is closed or ctx ends. Only
// CONNECT is served; a domain name is passed to Dial as is.
func ServeSOCKS5(ctx context.Context, l net.Listener, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	return serveListener(ctx, l, func(ctx context.Context, c net.Conn) { serveSOCKS5Conn(ctx, c, cfg) })
}

func serveSOCKS5Conn(ctx context.Context, c net.Conn, cfg Config) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	addr, err := socksHandshake(br, c, cfg)
	if err != nil {
		cfg.logger().Debug("socks5 client refused", "from", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	remote, err := cfg.Dial(ctx, addr)
	if err != nil {
		cfg.logger().Info("socks5 connect failed", "to", addr, "err", err)
		c.Write(socksReply(byte(classify(err))))
		c.Close()
		return
	}
	if _, err := c.Write(socksReply(replyOK)); err != nil {
		remote.Close()
		c.Close()
		return
	}
	tunnel.Join(withBuffered(c, br), remote)
}

// withBuffered is c, reading first what br buffered of it (nothing, with
// clients that wait for the reply as the protocols say).
func withBuffered(c net.Conn, br *bufio.Reader) net.Conn {
	if br.Buffered() == 0 {
		return c
	}
	return bufferedConn{Conn: c, r: io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)}
}

// socksHandshake reads the greeting, authenticates and reads the CONNECT
// request, answering the client where the protocol asks for it; it
// returns the address to connect to.
func socksHandshake(br *bufio.Reader, w io.Writer, cfg Config) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != socksVersion {
		return "", fmt.Errorf("version %d, not SOCKS5", hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return "", err
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == methodUserPass
	}
	if !offered {
		w.Write([]byte{socksVersion, methodNone})
		return "", errors.New("the client offers no username/password authentication")
	}
	if _, err := w.Write([]byte{socksVersion, methodUserPass}); err != nil {
		return "", err
	}
	// RFC 1929: VER(1) ULEN UNAME PLEN PASSWD.
	ver, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	if ver != 1 {
		return "", fmt.Errorf("auth version %d", ver)
	}
	user, err := readShort(br)
	if err != nil {
		return "", err
	}
	pass, err := readShort(br)
	if err != nil {
		return "", err
	}
	if !cfg.authorized(user, pass) && !cfg.javaStyle(user, pass) {
		w.Write([]byte{1, 1})
		return "", errors.New("wrong username or password")
	}
	if _, err := w.Write([]byte{1, 0}); err != nil {
		return "", err
	}
	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil {
		return "", err
	}
	if req[0] != socksVersion {
		return "", fmt.Errorf("request version %d", req[0])
	}
	var host string
	switch req[3] {
	case atypIPv4, atypIPv6:
		ip := make([]byte, 4)
		if req[3] == atypIPv6 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case atypDomain:
		if host, err = readShort(br); err != nil {
			return "", err
		}
	default:
		w.Write(socksReply(replyAddrUnsupported))
		return "", fmt.Errorf("address type %d", req[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", err
	}
	if req[1] != cmdConnect {
		w.Write(socksReply(replyCmdUnsupported))
		return "", fmt.Errorf("command %d: only CONNECT is served", req[1])
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

func readShort(br *bufio.Reader) (string, error) {
	n, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(br, b)
	return string(b), err
}

// socksReply is a reply with the bound address 0.0.0.0:0: the address the
// agent dialed from is the pod's, of no use to the client.
func socksReply(code byte) []byte {
	return []byte{socksVersion, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0}
}

// bufferedConn reads what the handshake's reader buffered before the
// connection itself.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite passes a half-close on, for Join.
func (b bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
