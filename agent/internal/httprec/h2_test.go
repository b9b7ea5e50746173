package httprec

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

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
	for _, e := range held(t, ring) {
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
		ex := held(t, ring)
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
