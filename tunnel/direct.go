package tunnel

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The direct path (spec.md, section 4): the agent opens a TCP connection to
// the daemon, the daemon's certificate pinned, and the tunnel's handshake
// runs over TLS on it, the agent as the tunnel's server as always.

// Identity is the daemon's key and self-signed certificate for direct
// paths. It lives in memory only, one per daemon run.
type Identity struct {
	cert tls.Certificate
}

// NewIdentity makes an ECDSA P-256 key and a self-signed certificate for it.
func NewIdentity() (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tunnel: make the direct path's key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tunnel: make a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "tether daemon"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tunnel: make the direct path's certificate: %w", err)
	}
	return &Identity{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}, nil
}

// Certificate returns the certificate (DER) the agent pins.
func (id *Identity) Certificate() []byte { return bytes.Clone(id.cert.Certificate[0]) }

func (id *Identity) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{id.cert}, MinVersion: tls.VersionTLS13}
}

// ErrNotPinned: the TLS peer presented another certificate than the one
// pinned.
var ErrNotPinned = errors.New("tunnel: the peer's certificate is not the pinned one")

// pinnedTLS trusts exactly the certificate der: no system roots, no names.
func pinnedTLS(der []byte) *tls.Config {
	der = bytes.Clone(der)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is the pin below, in place of a chain to a root.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], der) {
				return ErrNotPinned
			}
			return nil
		},
	}
}

// RouteSource returns the local address this machine's routing uses to
// reach dst: the address a pod at dst reaches the laptop by, when it can
// reach it at all. No packet is sent. It fails when dst is not routable
// from here, or when the route leaves by loopback.
func RouteSource(dst netip.Addr) (netip.Addr, error) {
	if !dst.IsValid() || dst.IsUnspecified() || dst.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("pod address %q cannot be reached from here", dst)
	}
	c, err := net.Dial("udp", netip.AddrPortFrom(dst, 9).String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route from this machine to the pod address %s: %w", dst, err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if src.IsLoopback() || src.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("the route to the pod address %s leaves by %s: the pod has no address of this machine to reach", dst, src)
	}
	return src, nil
}

// DirectListener waits, on one local address, for the agent's direct
// connection: it accepts until one connection passes TLS and the tunnel
// handshake with the token, or until Accept's context ends.
type DirectListener struct {
	ln  net.Listener
	id  *Identity
	cfg Config
}

// ListenDirect listens on addr (port 0: any free port) for a direct path.
// addr must be the one address the pod reaches the laptop by (RouteSource),
// never an unspecified one.
func ListenDirect(addr netip.Addr, id *Identity, cfg Config) (*DirectListener, error) {
	if !addr.IsValid() || addr.IsUnspecified() {
		return nil, fmt.Errorf("tunnel: listen for a direct path on %q: want one address of this machine", addr)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tunnel config: %w", err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return nil, fmt.Errorf("tunnel: listen for a direct path: %w", err)
	}
	return &DirectListener{ln: ln, id: id, cfg: cfg}, nil
}

// Addr is where the agent must connect.
func (l *DirectListener) Addr() netip.AddrPort {
	return l.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops listening; a pending Accept returns.
func (l *DirectListener) Close() error { return l.ln.Close() }

// Accept returns the tunnel of the first connection that completes TLS
// with the daemon's certificate and the handshake as the tunnel's client
// (the peer proves it holds the token). Others are refused and logged, and
// the listener goes on waiting until ctx ends. It closes the listener
// before it returns.
func (l *DirectListener) Accept(ctx context.Context) (*Session, error) {
	defer l.ln.Close()
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		winner *Session
		over   bool
	)
	won := make(chan struct{})
	accepted := make(chan error, 1)
	go func() {
		for {
			c, err := l.ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			go func() {
				s, err := l.handshake(hctx, c)
				if err != nil {
					l.cfg.logger().Warn("direct path: connection refused", "from", c.RemoteAddr().String(), "err", err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if over || winner != nil {
					s.Close() // another connection won, or Accept gave up
					return
				}
				winner = s
				close(won)
			}()
		}
	}()
	var err error
	select {
	case <-won:
	case <-ctx.Done():
		err = fmt.Errorf("tunnel: no direct connection from the agent: %w", ctx.Err())
	case aerr := <-accepted:
		err = fmt.Errorf("tunnel: accept a direct connection: %w", aerr)
	}
	mu.Lock()
	defer mu.Unlock()
	over = true
	if winner != nil {
		return winner, nil
	}
	return nil, err
}

func (l *DirectListener) handshake(ctx context.Context, c net.Conn) (*Session, error) {
	// TLS reads and writes the socket with raw system calls (RawIO).
	tc := tls.Server(RawIO(c), l.id.serverTLS())
	hctx, cancel := context.WithTimeout(ctx, l.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return Client(ctx, tc, l.cfg)
}

// DialDirect is the agent's side: it connects to addr, trusting only the
// certificate der, and runs the tunnel's server handshake with cfg.
func DialDirect(ctx context.Context, addr string, der []byte, cfg Config) (*Session, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err // dial tcp ADDR: ... names the address
	}
	// TLS reads and writes the socket with raw system calls (RawIO).
	tc := tls.Client(RawIO(c), pinnedTLS(der))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS with %s: %w", addr, err)
	}
	return Server(ctx, tc, cfg)
}
