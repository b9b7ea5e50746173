package portforward

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/tools/portforward"
)

// wsPair returns a frameConn over the client end of a real WebSocket and
// the server's end, closed when the test ends.
func wsPair(t *testing.T) (*frameConn, *gwebsocket.Conn) {
	t.Helper()
	srvCh := make(chan *gwebsocket.Conn, 1)
	up := gwebsocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		srvCh <- ws
	}))
	t.Cleanup(srv.Close)
	ws, _, err := gwebsocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newFrameConn(ws)
	server := <-srvCh
	t.Cleanup(func() { c.Close(); server.Close() })
	return c, server
}

// messages delivers each message the server end reads.
func messages(t *testing.T, ws *gwebsocket.Conn) <-chan []byte {
	ch := make(chan []byte, 1024)
	go func() {
		defer close(ch)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			ch <- b
		}
	}()
	return ch
}

// next returns the next message; a message that never comes fails the
// test (the bound is a hang guard: a frame held back never arrives).
func next(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("the WebSocket closed before the message")
		}
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no message: a written frame was held back")
		return nil
	}
}

func noMessage(t *testing.T, ch <-chan []byte) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("a message before its frame was complete: %x", b)
	case <-time.After(20 * time.Millisecond):
	}
}

func controlFrame(typ uint16, flags byte, body []byte) []byte {
	f := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint16(f[0:], 0x8000|3)
	binary.BigEndian.PutUint16(f[2:], typ)
	binary.BigEndian.PutUint32(f[4:], uint32(flags)<<24|uint32(len(body)))
	return append(f, body...)
}

func dataFrame(stream uint32, flags byte, data []byte) []byte {
	f := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint32(f[0:], stream)
	binary.BigEndian.PutUint32(f[4:], uint32(flags)<<24|uint32(len(data)))
	return append(f, data...)
}

func frameShapes() map[string][]byte {
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: past the WebSocket write buffer
	return map[string][]byte{
		"control, SYN_STREAM with a body":       controlFrame(1, 0, []byte("stream-id, assoc, priority, headers")),
		"control, PING":                         controlFrame(6, 0, []byte{0, 0, 0, 1}),
		"control, no body":                      controlFrame(4, 0, nil),
		"control, flags and a 0x80 length byte": controlFrame(3, 1, bytes.Repeat([]byte{0x80}, 0x80)),
		"data, small":                           dataFrame(1, 0, []byte("hello")),
		"data, no data (FIN)":                   dataFrame(3, 1, nil),
		"data, stream id with high bytes":       dataFrame(0x7fffff01, 0, []byte{0xff, 0x80, 0}),
		"data, 160 KiB":                         dataFrame(5, 0, big),
	}
}

// TestFrameConnOneMessagePerFrame writes each frame shape whole, as
// spdystream does (header words, then the data), at every split point,
// and byte by byte: each frame arrives as exactly one message, as soon as
// its last byte is written.
func TestFrameConnOneMessagePerFrame(t *testing.T) {
	c, srv := wsPair(t)
	msgs := messages(t, srv)
	for name, f := range frameShapes() {
		t.Run(name, func(t *testing.T) {
			writeAll := func(pieces ...[]byte) {
				t.Helper()
				for i, p := range pieces {
					if n, err := c.Write(p); err != nil || n != len(p) {
						t.Fatalf("write %d: %d, %v", i, n, err)
					}
				}
				// A message sent early holds part of the frame: it shows
				// here, or as the next message of the next round.
				if got := next(t, msgs); !bytes.Equal(got, f) {
					t.Fatalf("message %x..., want the frame %x... (%d vs %d bytes)", got[:min(16, len(got))], f[:min(16, len(f))], len(got), len(f))
				}
			}
			writeAll(f)
			writeAll(f[:4], f[4:8], f[8:]) // spdystream's data frame writes
			splits := len(f)
			if splits > 64 {
				splits = 64 // and the last byte below
			}
			for k := 1; k < splits; k++ {
				writeAll(f[:k], f[k:])
			}
			writeAll(f[:len(f)-1], f[len(f)-1:])
			writeAll(f, nil) // an empty Write after a frame sends nothing
			if len(f) <= 256 {
				var pieces [][]byte
				for i := range f {
					pieces = append(pieces, f[i:i+1])
				}
				writeAll(pieces...)
			}
			noMessage(t, msgs)
		})
	}
}

// TestFrameConnFramesInOneWrite: one Write carrying several frames and the
// start of another sends each complete one and keeps only the rest.
func TestFrameConnFramesInOneWrite(t *testing.T) {
	c, srv := wsPair(t)
	msgs := messages(t, srv)
	f1, f2, f3 := dataFrame(1, 0, []byte("one")), controlFrame(9, 0, []byte{0, 0, 0, 1, 0, 0, 0, 9}), dataFrame(1, 1, nil)
	f4 := dataFrame(1, 0, []byte("four"))
	var all []byte
	for _, f := range [][]byte{f1, f2, f3, f4[:5]} {
		all = append(all, f...)
	}
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{f1, f2, f3} {
		if got := next(t, msgs); !bytes.Equal(got, want) {
			t.Fatalf("message %d: %x, want %x", i, got, want)
		}
	}
	noMessage(t, msgs)
	if _, err := c.Write(f4[5:]); err != nil {
		t.Fatal(err)
	}
	if got := next(t, msgs); !bytes.Equal(got, f4) {
		t.Fatalf("last message %x, want %x", got, f4)
	}
}

// TestFrameConnRead reads the server's messages as one stream, whatever
// their boundaries, and a normal close as EOF.
func TestFrameConnRead(t *testing.T) {
	c, srv := wsPair(t)
	go func() {
		for _, m := range []string{"he", "", "llo ", "world"} {
			srv.WriteMessage(gwebsocket.BinaryMessage, []byte(m))
		}
		srv.WriteMessage(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""))
	}()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("read %q, %v; want %q and EOF", got, err, "hello world")
	}
}

func TestFrameConnRefusesTextMessages(t *testing.T) {
	c, srv := wsPair(t)
	srv.WriteMessage(gwebsocket.TextMessage, []byte("hi"))
	if _, err := c.Read(make([]byte, 8)); err == nil || !strings.Contains(err.Error(), "message type") {
		t.Fatalf("read of a text message: %v, want an error naming the message type", err)
	}
}

// TestSPDYOverFrameConn runs client-go's SPDY client over a frameConn
// against a SPDY server: every message the server receives holds exactly
// one SPDY frame, and the stream's bytes arrive.
func TestSPDYOverFrameConn(t *testing.T) {
	c, srv := wsPair(t)
	pr, pw := io.Pipe()
	framing := make(chan error, 1)
	go func() {
		defer pw.Close()
		for {
			_, b, err := srv.ReadMessage()
			if err != nil {
				framing <- nil
				return
			}
			if err := oneFrame(b); err != nil {
				framing <- err
				return
			}
			if _, err := pw.Write(b); err != nil {
				framing <- nil
				return
			}
		}
	}()
	// The server's side reads the checked messages and writes through a
	// frameConn of its own.
	server := &splitConn{Reader: pr, frameConn: newFrameConn(srv)}
	received := make(chan []byte, 1)
	sconn, err := httpstreamspdy.NewServerConnection(server, func(s httpstream.Stream, _ <-chan struct{}) error {
		go func() {
			b, _ := io.ReadAll(s)
			received <- b
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close()
	cconn, err := httpstreamspdy.NewClientConnection(c)
	if err != nil {
		t.Fatal(err)
	}
	defer cconn.Close()
	st, err := cconn.CreateStream(http.Header{"X-Test": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("tether "), 50000)
	for _, p := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), want} {
		if _, err := st.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	select {
	case got := <-received:
		if !bytes.HasPrefix(got, []byte("GET /")) || !bytes.Equal(got[18:], want) {
			t.Fatalf("server read %d bytes, want %d", len(got), 18+len(want))
		}
	case err := <-framing:
		t.Fatalf("a message that is not one frame: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the stream's bytes never arrived")
	}
	select {
	case err := <-framing:
		if err != nil {
			t.Fatalf("a message that is not one frame: %v", err)
		}
	default:
	}
}

// oneFrame checks that b is exactly one SPDY frame.
func oneFrame(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%d bytes, shorter than a frame header", len(b))
	}
	if n := int(binary.BigEndian.Uint32(b[4:]) & 0xffffff); len(b) != 8+n {
		return fmt.Errorf("%d bytes, the frame's header says %d", len(b), 8+n)
	}
	return nil
}

// splitConn reads from Reader and writes through frameConn.
type splitConn struct {
	io.Reader
	*frameConn
}

func (s *splitConn) Read(p []byte) (int, error) { return s.Reader.Read(p) }

var _ net.Conn = (*splitConn)(nil)

// BenchmarkSPDYDataFrame writes 100-byte SPDY data frames (a small
// request) through client-go's SPDY client over a WebSocket, with
// client-go's TunnelingConnection (one message per Write) and with
// frameConn, and reports the socket writes (TLS records) per frame.
func BenchmarkSPDYDataFrame(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(*gwebsocket.Conn) net.Conn
	}{
		{"client-go TunnelingConnection", func(ws *gwebsocket.Conn) net.Conn { return portforward.NewTunnelingConnection("bench", ws) }},
		{"frameConn", func(ws *gwebsocket.Conn) net.Conn { return newFrameConn(ws) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := gwebsocket.Upgrader{}
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := up.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				conn, err := httpstreamspdy.NewServerConnection(newFrameConn(ws), func(s httpstream.Stream, _ <-chan struct{}) error {
					go io.Copy(io.Discard, s)
					return nil
				})
				if err != nil {
					return
				}
				<-conn.CloseChan()
			}))
			defer srv.Close()
			var writes atomic.Int64
			d := gwebsocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig,
				NetDial: func(network, addr string) (net.Conn, error) {
					c, err := net.Dial(network, addr)
					return &countingConn{Conn: c, writes: &writes}, err
				}}
			ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				b.Fatal(err)
			}
			conn, err := httpstreamspdy.NewClientConnection(tc.wrap(ws))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			st, err := conn.CreateStream(http.Header{})
			if err != nil {
				b.Fatal(err)
			}
			p := bytes.Repeat([]byte("x"), 100)
			writes.Store(0)
			b.ResetTimer()
			for range b.N {
				if _, err := st.Write(p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/frame")
		})
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
