package httprec

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// heapHeld runs f and returns how much the heap in use grew while what f
// returns is still alive.
func heapHeld(f func() any) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	return int64(after.HeapInuse) - int64(before.HeapInuse)
}

// slack is what the recorder may hold beyond its budget: a read in
// progress, buffers rounded up, the runtime's noise.
const slack = 4 << 20

// TestPipelinedFloodHeldWithinBudget: 1 MiB of pipelined GETs to an app
// that never answers held ~40,000 pending exchanges (+39 MiB) outside the
// ring's budget.
func TestPipelinedFloodHeldWithinBudget(t *testing.T) {
	const budget = 1 << 20
	var ring *Ring
	grew := heapHeld(func() any {
		ring = NewRing(budget)
		c := ring.NewConn(Meta{}, DefaultOptions())
		flood := bytes.Repeat([]byte(floodGET), (1<<20)/len(floodGET))
		for p := flood; len(p) > 0; p = p[min(len(p), 32<<10):] {
			c.FromClient(p[:min(len(p), 32<<10)])
		}
		return c
	})
	if grew > budget+slack {
		t.Errorf("the recorder holds %d MiB for a 1 MiB budget", grew>>20)
	}
	if st := ring.Stats(); st.InflightBytes+st.StoredBytes > budget || st.Limited != 1 {
		t.Errorf("stats %+v: past the budget, or the connection not counted as limited", st)
	}
}

// TestLimitedConnectionStillForwarded: a connection past its share stops
// being recorded, while its bytes go on unchanged (to an app that reads
// and never answers), and gives back all it held.
func TestLimitedConnectionStillForwarded(t *testing.T) {
	ring := NewRing(1 << 20)
	app, got := startSink(t)
	addr := recordingProxy(t, ring, app, Options{BodyCap: 1 << 10, MaxHead: 4 << 10, ConnShare: 64 << 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flood := bytes.Repeat([]byte(floodGET), (1<<20)/len(floodGET))
	c.Write(flood)
	c.(*net.TCPConn).CloseWrite()
	if in := <-got; !bytes.Equal(in, flood) {
		t.Fatalf("forwarding changed the bytes: %d reached the app of %d", len(in), len(flood))
	}
	io.ReadAll(c)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ring.Stats().Limited == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := ring.Stats(); st.Limited != 1 || st.InflightBytes != 0 {
		t.Errorf("stats %+v: want the connection limited, nothing left in flight", st)
	}
}

// startSink starts a TCP server that reads a connection to its end, never
// answering, and hands over what it read.
func startSink(t testing.TB) (string, <-chan []byte) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		in, _ := io.ReadAll(c)
		c.Close()
		got <- in
	}()
	return l.Addr().String(), got
}

// TestPipelinedFloodLinear: the work per request does not grow with what
// else came in the same read (it re-copied the rest of the read per head).
// Measured in bytes allocated, not time.
func TestPipelinedFloodLinear(t *testing.T) {
	ring := NewRing(64 << 20)
	c := ring.NewConn(Meta{}, DefaultOptions())
	read := bytes.Repeat([]byte(floodGET), (64<<10)/len(floodGET))
	answers := bytes.Repeat([]byte(floodAnswer), (64<<10)/len(floodGET))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		c.FromClient(read)
		c.FromServer(answers)
	}
	runtime.ReadMemStats(&after)
	n := 4 * uint64(len(read)/len(floodGET))
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 4<<10 {
		t.Errorf("%d bytes allocated per pipelined request; want a cost that does not depend on the read's size", per)
	}
	if st := ring.Stats(); st.Exchanges != n {
		t.Errorf("recorded %d of %d", st.Exchanges, n)
	}
}

// TestHTTP1TrailerFlood: trailer lines without end grew a header map
// without bound.
func TestHTTP1TrailerFlood(t *testing.T) {
	var ring *Ring
	grew := heapHeld(func() any {
		ring = NewRing(1 << 20)
		c := ring.NewConn(Meta{}, DefaultOptions())
		c.FromClient([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"))
		line := bytes.Repeat([]byte("a: b\r\n"), 4096)
		for range 2048 { // 48 MiB of trailer lines
			c.FromClient(line)
		}
		return c
	})
	if grew > (1<<20)+slack {
		t.Errorf("the recorder holds %d MiB of trailers for a 1 MiB budget", grew>>20)
	}
}

func TestHTTP1FieldValidation(t *testing.T) {
	for _, tc := range []struct {
		name, req string
		record    bool
	}{
		{"plain", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"method with token specials", "$|&`~ /a HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"method with NUL", "G\x00T /a HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"method with DEL", "GE\x7f /a HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"method with quote", "GE\" /a HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"target with CR", "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"target with control", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"target with tab", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"header value with CR", "GET /a HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", false},
		{"header value with NUL", "GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", false},
		{"header name with NUL", "GET /a HTTP/1.1\r\nHost: x\r\nX\x00Y: a\r\n\r\n", false},
		{"header name with CR", "GET /a HTTP/1.1\r\nHost: x\r\nX\rY: a\r\n\r\n", false},
		{"header name with slash", "GET /a HTTP/1.1\r\nHost: x\r\nX/Y: a\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ring := NewRing(1 << 20)
			c := ring.NewConn(Meta{}, DefaultOptions())
			c.FromClient([]byte(tc.req))
			c.FromServer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
			if got := ring.Stats().Exchanges; (got == 1) != tc.record {
				t.Errorf("recorded %d exchanges, want recorded=%v", got, tc.record)
			}
		})
	}
	// A response's fields likewise.
	ring := NewRing(1 << 20)
	c := ring.NewConn(Meta{}, DefaultOptions())
	c.FromClient([]byte("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.FromServer([]byte("HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n"))
	c.Close()
	if st := ring.Stats(); st.Exchanges != 0 || st.Malformed != 1 {
		t.Errorf("a response with NUL in a header: %+v", st)
	}
}

// h2frame builds an HTTP/2 frame.
func h2frame(typ, flags byte, stream uint32, payload []byte) []byte {
	f := make([]byte, 9, 9+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream)
	return append(f, payload...)
}

// h2block encodes fields with enc.
func h2block(enc *hpack.Encoder, buf *bytes.Buffer, fields ...string) []byte {
	buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), buf.Bytes()...)
}

// h2exchange is a client stream (preface, SETTINGS, a GET on stream id)
// and a server stream (SETTINGS, a 200 with END_STREAM).
func h2exchange(reqFields ...string) (client, server []byte) {
	var cb, sb bytes.Buffer
	ce, se := hpack.NewEncoder(&cb), hpack.NewEncoder(&sb)
	client = append([]byte(h2PrefaceText), h2frame(frameSettings, 0, 0, nil)...)
	client = append(client, h2frame(frameHeaders, flagEndHeaders|flagEndStream, 1, h2block(ce, &cb, reqFields...))...)
	server = h2frame(frameSettings, 0, 0, nil)
	server = append(server, h2frame(frameSettings, flagAck, 0, nil)...)
	server = append(server, h2frame(frameHeaders, flagEndHeaders|flagEndStream, 1, h2block(se, &sb, ":status", "200", "grpc-status", "0"))...)
	return client, server
}

var h2get = []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/a"}

func TestH2FieldValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
		record bool
	}{
		{"plain", h2get, true},
		{"method with token specials", []string{":method", "$|&`", ":path", "/a"}, true},
		{"method with newline", []string{":method", "GET\nX", ":path", "/a"}, false},
		{"method with space", []string{":method", "GET X", ":path", "/a"}, false},
		{"path with newline", []string{":method", "GET", ":path", "/a\nb"}, false},
		{"path with space", []string{":method", "GET", ":path", "/a b"}, false},
		{"path with NUL", []string{":method", "GET", ":path", "/a\x00"}, false},
		{"value with CR", []string{":method", "GET", ":path", "/a", "x", "a\rb"}, false},
		{"value with LF", []string{":method", "GET", ":path", "/a", "x", "a\nb"}, false},
		{"name with NUL", []string{":method", "GET", ":path", "/a", "x\x00y", "a"}, false},
		{"name with colon inside", []string{":method", "GET", ":path", "/a", "x:y", "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ring := NewRing(1 << 20)
			c := ring.NewConn(Meta{}, DefaultOptions())
			client, server := h2exchange(tc.fields...)
			c.FromClient(client)
			c.FromServer(server)
			c.Close()
			if got := ring.Stats().Exchanges; (got == 1) != tc.record {
				t.Errorf("recorded %d exchanges, want recorded=%v", got, tc.record)
			}
		})
	}
}

// TestH2HeaderListBound: a 17.5 KB HEADERS frame of indexed references to
// one large dynamic-table entry decoded to a 57 MiB header list.
func TestH2HeaderListBound(t *testing.T) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
	enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 3000)})
	for range 17000 {
		buf.WriteByte(0x80 | 62) // indexed: the newest dynamic-table entry
	}
	block := buf.Bytes()
	client := append([]byte(h2PrefaceText), h2frame(frameSettings, 0, 0, nil)...)
	for len(block) > 0 { // in frames of at most 16 KiB
		n := min(len(block), 16<<10)
		typ, flags := byte(frameContinuation), byte(0)
		if len(client) == len(h2PrefaceText)+9 {
			typ, flags = frameHeaders, flagEndStream
		}
		if n == len(block) {
			flags |= flagEndHeaders
		}
		client = append(client, h2frame(typ, flags, 1, block[:n])...)
		block = block[n:]
	}
	const budget = 64 << 20
	ring := NewRing(budget)
	opts := DefaultOptions()
	opts.MaxHead = 64 << 10
	c := ring.NewConn(Meta{}, opts)
	c.FromClient(client)
	_, server := h2exchange()
	c.FromServer(server)
	c.Close()
	st := ring.Stats()
	if st.StoredBytes+st.InflightBytes > budget {
		t.Errorf("stats %+v: a header list past the budget", st)
	}
	for _, e := range ring.Exchanges(nil) {
		if e.Size() > opts.MaxHead*2 {
			t.Errorf("an exchange of %d bytes from a %d-byte header block", e.Size(), len(client))
		}
	}
}

// TestH2StreamsNeverEnded: streams opened and never ended, the server
// silent, were each held without bound.
func TestH2StreamsNeverEnded(t *testing.T) {
	const budget = 256 << 10
	var ring *Ring
	grew := heapHeld(func() any {
		ring = NewRing(budget)
		c := ring.NewConn(Meta{}, DefaultOptions())
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		c.FromClient(append([]byte(h2PrefaceText), h2frame(frameSettings, 0, 0, nil)...))
		var read []byte
		for id := uint32(1); id < 200000; id += 2 {
			read = append(read, h2frame(frameHeaders, flagEndHeaders, id, h2block(enc, &buf, h2get...))...)
			if len(read) > 32<<10 {
				c.FromClient(read)
				read = read[:0]
			}
		}
		return c
	})
	if grew > budget+slack {
		t.Errorf("the recorder holds %d MiB of open streams for a %d KiB budget", grew>>20, budget>>10)
	}
}

// TestH2DynamicTableBound: a peer's SETTINGS_HEADER_TABLE_SIZE let the
// other side's encoder fill a decoder table of any size.
func TestH2DynamicTableBound(t *testing.T) {
	const budget = 1 << 20
	grew := heapHeld(func() any {
		ring := NewRing(budget)
		c := ring.NewConn(Meta{}, DefaultOptions())
		settings := make([]byte, 6)
		binary.BigEndian.PutUint16(settings, settingHeaderTableSize)
		binary.BigEndian.PutUint32(settings[2:], 1<<30)
		c.FromClient(append([]byte(h2PrefaceText), h2frame(frameSettings, 0, 0, nil)...))
		c.FromServer(h2frame(frameSettings, 0, 0, settings))
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		enc.SetMaxDynamicTableSizeLimit(1 << 30)
		enc.SetMaxDynamicTableSize(1 << 30)
		value := strings.Repeat("v", 8<<10)
		for id := uint32(1); id < 2*8192; id += 2 { // 64 MiB of distinct indexed fields
			block := h2block(enc, &buf, ":method", "GET", ":path", "/", "x-"+strings.Repeat("k", 8)+string(rune('a'+id%26))+itoa(id), value)
			c.FromClient(h2frame(frameHeaders, flagEndHeaders|flagEndStream, id, block))
			c.FromServer(h2frame(frameRSTStream, 0, id, []byte{0, 0, 0, 8}))
		}
		return c
	})
	if grew > budget+slack {
		t.Errorf("the recorder holds %d MiB of HPACK table for a 1 MiB budget", grew>>20)
	}
}

func itoa(n uint32) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

// TestH2PrefaceEverySplit: the client's preface and frames, cut at every
// point (and in 1-byte pieces, with the server's SETTINGS frames in 1-byte
// pieces between them), the server's SETTINGS before or after the client's
// first bytes: the exchange is recorded each time.
func TestH2PrefaceEverySplit(t *testing.T) {
	client, server := h2exchange(h2get...)
	settingsLen := 9
	run := func(t *testing.T, pieces [][]byte, serverFirst, interleave bool) {
		t.Helper()
		ring := NewRing(1 << 20)
		c := ring.NewConn(Meta{}, DefaultOptions())
		rest := server
		if serverFirst {
			c.FromServer(rest[:settingsLen])
			rest = rest[settingsLen:]
		}
		for _, p := range pieces {
			c.FromClient(p)
			if interleave && len(rest) > len(server)-2*settingsLen {
				c.FromServer(rest[:1])
				rest = rest[1:]
			}
		}
		c.FromServer(rest)
		c.Close()
		ex := ring.Exchanges(nil)
		if st := ring.Stats(); len(ex) != 1 || ex[0].Request.Target != "/a" || ex[0].Response == nil || ex[0].Response.Header.Get("grpc-status") != "0" {
			t.Errorf("pieces of %v, server first %v, interleaved %v: recorded %d exchanges, stats %+v", lens(pieces), serverFirst, interleave, len(ex), st)
		}
	}
	for _, serverFirst := range []bool{false, true} {
		for i := 1; i < len(client); i++ {
			run(t, [][]byte{client[:i], client[i:]}, serverFirst, false)
		}
		var ones [][]byte
		for i := range client {
			ones = append(ones, client[i:i+1])
		}
		run(t, ones, serverFirst, false)
		run(t, ones, serverFirst, true)
	}
}

func lens(pieces [][]byte) []int {
	var n []int
	for _, p := range pieces {
		n = append(n, len(p))
	}
	return n
}

// TestStoredWithinBudget: small exchanges cost the heap about two and a
// half times what recording.Exchange.Size counts (the header maps, the
// structs), so a full ring of them held far more than its budget.
func TestStoredWithinBudget(t *testing.T) {
	const budget = 8 << 20
	var ring *Ring
	grew := heapHeld(func() any {
		ring = NewRing(budget)
		for range 8 {
			c := ring.NewConn(Meta{Pod: "orders-1", Source: "10.0.0.1:1234"}, DefaultOptions())
			for range 5000 {
				c.FromClient([]byte(floodGET))
				c.FromServer([]byte(floodAnswer))
			}
			c.Close()
		}
		return ring
	})
	if grew > budget+slack {
		t.Errorf("a ring of %d MiB holds %d MiB: %+v", budget>>20, grew>>20, ring.Stats())
	}
}

// TestH2ControlFloods: PING, SETTINGS and WINDOW_UPDATE floods and a
// CONTINUATION flood hold nothing beyond a frame; the connection goes on
// being recorded after the control frames, and stops at the header
// block's bound on the CONTINUATION flood.
func TestH2ControlFloods(t *testing.T) {
	ring := NewRing(1 << 20)
	c := ring.NewConn(Meta{}, DefaultOptions())
	client, server := h2exchange(h2get...)
	c.FromClient(client[:len(h2PrefaceText)+9])
	var flood []byte
	for range 20000 {
		flood = append(flood, h2frame(0x6, 0, 0, make([]byte, 8))...)                      // PING
		flood = append(flood, h2frame(frameSettings, 0, 0, []byte{0, 3, 0, 0, 0, 100})...) // SETTINGS
		flood = append(flood, h2frame(0x8, 0, 0, []byte{0, 0, 0, 1})...)                   // WINDOW_UPDATE
	}
	c.FromClient(flood)
	c.FromServer(flood)
	if n := c.charged(); n > 4*maxTable {
		t.Errorf("control frames: %d bytes charged", n)
	}
	c.FromClient(client[len(h2PrefaceText)+9:])
	c.FromServer(server)
	c.Close()
	if st := ring.Stats(); st.Exchanges != 1 {
		t.Errorf("after the control frames: %+v", st)
	}

	ring = NewRing(1 << 20)
	c = ring.NewConn(Meta{}, DefaultOptions())
	c.FromClient(append([]byte(h2PrefaceText), h2frame(frameHeaders, 0, 1, []byte{0x82})...))
	for range 1000 {
		c.FromClient(h2frame(frameContinuation, 0, 1, make([]byte, 1024)))
	}
	if st := ring.Stats(); st.Limited != 1 || st.InflightBytes != connCost {
		t.Errorf("CONTINUATION flood: %+v", st)
	}
}

// TestConnStateCharged: each connection's own state counts against the
// budget; one that does not fit passes unrecorded, and a closed one gives
// its share back.
func TestConnStateCharged(t *testing.T) {
	ring := NewRing(4 * connCost)
	var conns []*Conn
	for range 5 {
		conns = append(conns, ring.NewConn(Meta{}, DefaultOptions()))
	}
	if st := ring.Stats(); st.Limited != 1 || st.InflightBytes != 4*connCost {
		t.Errorf("five connections on a budget for four: %+v", st)
	}
	for _, c := range conns {
		c.Close()
	}
	if st := ring.Stats(); st.InflightBytes != 0 {
		t.Errorf("all closed: %+v", st)
	}
}

// TestHTTP1LineAndFieldFloods: a chunk-size line without end and a head
// of many tiny fields are bounded (MaxHead, and the fields' cost against
// the connection's share).
func TestHTTP1LineAndFieldFloods(t *testing.T) {
	ring := NewRing(1 << 20)
	c := ring.NewConn(Meta{}, DefaultOptions())
	c.FromClient([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1"))
	for range 1024 {
		c.FromClient(bytes.Repeat([]byte("0"), 1024))
		if n := c.charged(); n > 2*DefaultOptions().MaxHead+(8<<10) {
			t.Fatalf("a chunk-size line: %d bytes charged", n)
		}
	}
	if st := ring.Stats(); st.Limited != 1 {
		t.Errorf("endless chunk-size line: %+v", st)
	}

	ring = NewRing(1 << 20)
	opts := DefaultOptions()
	opts.ConnShare = 256 << 10
	c = ring.NewConn(Meta{}, opts)
	head := "GET / HTTP/1.1\r\n" + strings.Repeat("a:\r\n", 15000) + "\r\n" // 60 KiB, 15,000 fields
	c.FromClient([]byte(head))
	if st := ring.Stats(); st.Limited != 1 || c.charged() > opts.ConnShare {
		t.Errorf("15,000 fields against a 256 KiB share: charged %d, %+v", c.charged(), st)
	}
}
