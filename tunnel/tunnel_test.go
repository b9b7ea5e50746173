package tunnel

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var testToken = []byte("0123456789abcdef-test-token")

// transport makes a connected pair of net.Conns.
type transport struct {
	name string
	pair func(t testing.TB) (client, server net.Conn)
}

func transports() []transport {
	return []transport{
		{"pipe", func(t testing.TB) (net.Conn, net.Conn) {
			c, s := net.Pipe()
			return c, s
		}},
		{"tcp", tcpPair},
		{"tls", tlsPair},
		{"tcp raw", rawPair},
	}
}

func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	return c, s
}

func tlsPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tunnel-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	pool.AddCert(leaf)
	c, s := tcpPair(t)
	tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	ts := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	return tc, ts
}

// sessions runs the handshake over a fresh pair and returns both ends,
// closed when the test ends.
func sessions(t testing.TB, tr transport, clientCfg, serverCfg Config) (*Session, *Session) {
	t.Helper()
	c, s := tr.pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		sess *Session
		err  error
	}
	srvCh := make(chan result, 1)
	go func() {
		sess, err := Server(ctx, s, serverCfg)
		srvCh <- result{sess, err}
	}()
	client, err := Client(ctx, c, clientCfg)
	srv := <-srvCh
	if err != nil || srv.err != nil {
		t.Fatalf("handshake: client %v, server %v", err, srv.err)
	}
	t.Cleanup(func() {
		client.Close()
		srv.sess.Close()
	})
	return client, srv.sess
}

func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

func TestHandshakeRefusals(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		tests := []struct {
			name      string
			token     []byte
			version   byte
			wantErr   error
			serverErr error
		}{
			{"wrong token", []byte("another-token-of-enough-length"), ProtocolVersion, ErrPeerUnproven, ErrBadToken},
			{"old version", testToken, ProtocolVersion + 1, ErrVersionUnsupported, ErrVersionUnsupported},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, s := tr.pair(t)
				defer c.Close()
				srvErr := make(chan error, 1)
				go func() {
					_, err := Server(context.Background(), s, DefaultConfig(testToken))
					srvErr <- err
				}()
				err := rawClientHandshake(c, tt.version, tt.token)
				c.Close()
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("client: %v, want %v", err, tt.wantErr)
				}
				if err := <-srvErr; !errors.Is(err, tt.serverErr) {
					t.Errorf("server: %v, want %v", err, tt.serverErr)
				}
			})
		}
	})
}

// TestAdmitRefuses: a client holding the token that the server no longer
// admits (a single-use token spent) hears "token refused", never "ok".
func TestAdmitRefuses(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		c, s := tr.pair(t)
		defer c.Close()
		admitted := 0
		cfg := DefaultConfig(testToken)
		cfg.Admit = func() bool { admitted++; return false }
		srvErr := make(chan error, 1)
		go func() {
			_, err := Server(context.Background(), s, cfg)
			srvErr <- err
		}()
		if err := clientHandshake(c, DefaultConfig(testToken)); !errors.Is(err, ErrBadToken) {
			t.Errorf("client: %v, want %v", err, ErrBadToken)
		}
		if err := <-srvErr; !errors.Is(err, ErrBadToken) {
			t.Errorf("server: %v, want %v", err, ErrBadToken)
		}
		if admitted != 1 {
			t.Errorf("Admit asked %d times, want once", admitted)
		}
	})
}

// rawClientHandshake is clientHandshake with a chosen version byte.
func rawClientHandshake(conn net.Conn, version byte, token []byte) error {
	cfg := DefaultConfig(token)
	if version == ProtocolVersion {
		return clientHandshake(conn, cfg)
	}
	// Only magic and version: the rest of a hello depends on the version.
	if _, err := conn.Write(append([]byte(magic), version)); err != nil {
		return err
	}
	var reply [6]byte
	if _, err := io.ReadFull(conn, reply[:]); err != nil {
		return err
	}
	if reply[5] == statusVersionUnsupported {
		return ErrVersionUnsupported
	}
	return fmt.Errorf("status %d", reply[5])
}

func TestNotATetherPeer(t *testing.T) {
	c, s := tcpPair(t)
	defer c.Close()
	go func() {
		io.ReadFull(s, make([]byte, 5+nonceLen))
		s.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		s.Close()
	}()
	_, err := Client(context.Background(), c, DefaultConfig(testToken))
	if !errors.Is(err, ErrNotTether) {
		t.Errorf("Client against an HTTP server: %v, want ErrNotTether", err)
	}
}

// TestClientProvesNothingToAnImpostor: a peer that answers like an agent
// but cannot prove it holds the token (the app behind a port-forward that
// reached the wrong port, or another tether agent) gets ErrPeerUnproven
// and not one byte beyond the client's random challenge.
func TestClientProvesNothingToAnImpostor(t *testing.T) {
	c, s := tcpPair(t)
	defer c.Close()
	got := make(chan []byte, 1)
	go func() {
		hello := make([]byte, 5+nonceLen)
		io.ReadFull(s, hello)
		reply := append([]byte(magic), ProtocolVersion, statusOK)
		reply = append(reply, make([]byte, nonceLen+macLen)...) // a guess at the proof
		s.Write(reply)
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		rest, _ := io.ReadAll(s)
		got <- append(hello, rest...)
	}()
	_, err := Client(context.Background(), c, DefaultConfig(testToken))
	if !errors.Is(err, ErrPeerUnproven) {
		t.Fatalf("Client against an impostor: %v, want ErrPeerUnproven", err)
	}
	c.Close()
	sent := <-got
	if len(sent) != 5+nonceLen {
		t.Errorf("the client sent %d bytes to a peer that proved nothing, want only its %d-byte hello", len(sent), 5+nonceLen)
	}
}

// TestTokenNeverTravels: in a successful handshake neither side writes the
// token itself.
func TestTokenNeverTravels(t *testing.T) {
	c, s := tcpPair(t)
	var fromClient, fromServer bytes.Buffer
	cw := &recordingConn{Conn: c, w: &fromClient}
	sw := &recordingConn{Conn: s, w: &fromServer}
	done := make(chan error, 1)
	go func() { done <- serverHandshake(sw, DefaultConfig(testToken)) }()
	if err := clientHandshake(cw, DefaultConfig(testToken)); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	for name, b := range map[string][]byte{"client": fromClient.Bytes(), "server": fromServer.Bytes()} {
		if bytes.Contains(b, testToken) {
			t.Errorf("the %s wrote the token on the wire", name)
		}
	}
}

// recordingConn copies what is written to w.
type recordingConn struct {
	net.Conn
	w *bytes.Buffer
}

func (r *recordingConn) Write(b []byte) (int, error) {
	r.w.Write(b)
	return r.Conn.Write(b)
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig(testToken).Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	bad := DefaultConfig([]byte("short"))
	bad.KeepAliveInterval = 0
	bad.MaxStreamWindow = 1
	err := bad.Validate()
	for _, want := range []string{"token is 5 bytes", "KeepAliveInterval", "MaxStreamWindow"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

// TestControlGRPC serves a real gRPC service on the server end's control
// listener and calls it from the client end through control streams.
func TestControlGRPC(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		client, server := sessions(t, tr, DefaultConfig(testToken), DefaultConfig(testToken))
		srv := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus("tether.agent.v1.Agent", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(srv, hs)
		go srv.Serve(server.ControlListener())
		defer srv.Stop()

		conn, err := grpc.NewClient("passthrough:///agent",
			grpc.WithContextDialer(client.DialControl),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "tether.agent.v1.Agent"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status = %v", resp.GetStatus())
		}
	})
}

// TestConnStreamsBothWays opens streams from each end, sends data both ways
// with half-close, and checks every byte and the metadata.
func TestConnStreamsBothWays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		// With the default Config: 20 streams of 1 MiB at once over a
		// synchronous pipe, under -race, keep a frame waiting in the send
		// queue well past DeadPeerTimeout; bytes keep arriving, so the
		// peer is not taken for dead.
		cfg := DefaultConfig(testToken)
		client, server := sessions(t, tr, cfg, cfg)
		for _, dir := range []struct {
			name           string
			opener, accept *Session
		}{{"client opens", client, server}, {"server opens", server, client}} {
			t.Run(dir.name, func(t *testing.T) {
				const streams = 20
				payload := make([]byte, 1<<20)
				rand.Read(payload)
				want := sha256.Sum256(payload)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()

				// The accepting end echoes each stream's bytes back reversed in
				// role: it reads to EOF, then writes the SHA-256 and its meta.
				go func() {
					for range streams {
						st, err := dir.accept.Accept(ctx)
						if err != nil {
							return
						}
						go func() {
							defer st.Close()
							h := sha256.New()
							io.Copy(h, st)
							st.Write(h.Sum(nil))
							st.Write(st.Meta)
						}()
					}
				}()
				var wg sync.WaitGroup
				var failures atomic.Int32
				for i := range streams {
					wg.Add(1)
					go func() {
						defer wg.Done()
						meta := []byte(fmt.Sprintf("conn-%d", i))
						st, err := dir.opener.Open(ctx, RoleConn, meta)
						if err != nil {
							t.Errorf("open: %v", err)
							failures.Add(1)
							return
						}
						defer st.Close()
						if _, err := st.Write(payload); err != nil {
							t.Errorf("write: %v", err)
							return
						}
						st.CloseWrite()
						got, err := io.ReadAll(st)
						if err != nil {
							t.Errorf("read: %v", err)
							return
						}
						if !bytes.Equal(got[:32], want[:]) || string(got[32:]) != string(meta) {
							t.Errorf("stream %d: got sum %x meta %q", i, got[:min(32, len(got))], got[min(32, len(got)):])
						}
					}()
				}
				wg.Wait()
			})
		}
	})
}

// TestDeadPeerNoticed freezes the client's side of the connection (its
// writes vanish) and checks that the server end closes the session on its
// own, by keepalive, instead of waiting forever.
func TestDeadPeerNoticed(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		c, s := tr.pair(t)
		fc := &freezableConn{Conn: c}
		ctx := context.Background()
		srvCh := make(chan *Session, 1)
		go func() {
			sess, err := Server(ctx, s, DefaultConfig(testToken))
			if err != nil {
				t.Error(err)
			}
			srvCh <- sess
		}()
		client, err := Client(ctx, fc, DefaultConfig(testToken))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server := <-srvCh
		defer server.Close()

		fc.freeze()
		select {
		case <-server.Done():
		case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("server end never noticed its peer was gone")
		}
		if _, err := server.Open(ctx, RoleConn, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Open on a dead session: %v, want ErrClosed", err)
		}
	})
}

// freezableConn drops every write once frozen, like a peer whose machine
// went to sleep, and blocks reads: nothing reaches the other side any more.
type freezableConn struct {
	net.Conn
	frozen atomic.Bool
}

func (f *freezableConn) freeze() { f.frozen.Store(true) }

func (f *freezableConn) Write(p []byte) (int, error) {
	if f.frozen.Load() {
		return len(p), nil
	}
	return f.Conn.Write(p)
}

func TestBadStreamHeaderIsDropped(t *testing.T) {
	client, server := sessions(t, transports()[1], DefaultConfig(testToken), DefaultConfig(testToken))
	// A stream with an unknown role is closed by the server end; a good one
	// opened after it still arrives.
	bad, err := client.Open(context.Background(), Role(99), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := bad.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on refused stream: %d, %v; want EOF", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Open(ctx, RoleConn, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	st, err := server.Accept(ctx)
	if err != nil || string(st.Meta) != "ok" {
		t.Fatalf("Accept = %v, %v", st, err)
	}
}
