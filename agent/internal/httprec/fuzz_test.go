package httprec

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// holds is what c holds, counted from its state rather than from its
// meter: exchanges waiting and their bodies, buffers, HTTP/2 tables.
func (c *Conn) holds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := cap(c.req.buf) + cap(c.resp.buf) + cap(c.held)
	if !c.off {
		n += connCost
	}
	for _, p := range c.pending {
		n += pendingCost + cap(p.reqBody.data) + cap(p.respBody.data)
	}
	if c.h2 != nil {
		n += c.h2.buffered()
		for _, st := range c.h2.streams {
			n += pendingCost + cap(st.p.reqBody.data) + cap(st.p.respBody.data)
		}
	}
	return n
}

// checkHeld fails t when c holds what it has not charged, or has charged
// past its share or the ring's budget.
func checkHeld(t *testing.T, ring *Ring, c *Conn, share int) {
	t.Helper()
	holds, charged := c.holds(), c.charged()
	if holds > charged || charged > share {
		t.Fatalf("holds %d bytes, charged %d, share %d", holds, charged, share)
	}
	if st := ring.Stats(); st.StoredBytes+st.InflightBytes > st.BudgetBytes {
		t.Fatalf("past the budget: %+v", st)
	}
}

// checkClosed fails t when a closed connection still holds anything.
func checkClosed(t *testing.T, ring *Ring, c *Conn) {
	t.Helper()
	if n := c.charged(); n != 0 {
		t.Fatalf("a closed connection still charges %d bytes", n)
	}
	if st := ring.Stats(); st.InflightBytes != 0 || st.StoredBytes > st.BudgetBytes {
		t.Fatalf("after close: %+v", st)
	}
}

// FuzzPipelined sends a message reps times back to back, in pieces of
// split bytes, the app answering each piece with answer (or silent): what
// the recorder holds stays charged, within the connection's share and the
// ring's budget, and everything is given back at the close.
func FuzzPipelined(f *testing.F) {
	f.Add([]byte(floodGET), []byte(floodAnswer), uint16(3000), uint16(4096))
	f.Add([]byte(floodGET), []byte{}, uint16(3000), uint16(32<<10))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), []byte{}, uint16(500), uint16(1))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nA: b\r\nA: b\r\n\r\n"), []byte(floodAnswer), uint16(800), uint16(7))
	f.Add([]byte("GET / HTTP/1.1\r\n"+string(bytes.Repeat([]byte("X-A: b\r\n"), 400))+"\r\n"), []byte{}, uint16(200), uint16(1500))
	f.Add([]byte("0\r\nA: b\r\n"), []byte{}, uint16(9000), uint16(100))
	f.Fuzz(func(t *testing.T, msg, answer []byte, reps, split uint16) {
		const share = 32 << 10
		ring := NewRing(64 << 10)
		c := ring.NewConn(Meta{}, Options{BodyCap: 4096, MaxHead: 4096, ConnShare: share})
		stream := bytes.Repeat(msg, min(int(reps)%4000, (256<<10)/max(len(msg), 1)))
		step := max(int(split), 1)
		for len(stream) > 0 {
			n := min(step, len(stream))
			c.FromClient(stream[:n])
			stream = stream[n:]
			if len(answer) > 0 {
				c.FromServer(answer)
			}
			checkHeld(t, ring, c, share)
		}
		c.Close()
		checkClosed(t, ring, c)
	})
}

// FuzzH2HeaderFlood sends reps HEADERS frames carrying block (raw HPACK,
// on new streams or all on one), after a SETTINGS that may raise the
// header table: whatever the block decodes to, what the recorder holds
// stays charged and within its bounds.
func FuzzH2HeaderFlood(f *testing.F) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
	enc.WriteField(hpack.HeaderField{Name: "x-big", Value: string(bytes.Repeat([]byte("v"), 3000))})
	for range 3000 {
		buf.WriteByte(0x80 | 62)
	}
	f.Add(append([]byte(nil), buf.Bytes()...), uint16(20), true, uint32(1<<30))
	buf.Reset()
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/a.B/C"})
	enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	f.Add(append([]byte(nil), buf.Bytes()...), uint16(3000), true, uint32(4096))
	f.Add(append([]byte(nil), buf.Bytes()...), uint16(3000), false, uint32(0))
	f.Add([]byte{0x3f, 0xe1, 0xff, 0x03}, uint16(10), true, uint32(1<<20)) // a table size update
	f.Fuzz(func(t *testing.T, block []byte, reps uint16, newStreams bool, table uint32) {
		const share = 64 << 10
		ring := NewRing(256 << 10)
		c := ring.NewConn(Meta{}, Options{BodyCap: 4096, MaxHead: 16 << 10, ConnShare: share})
		settings := []byte{0, settingHeaderTableSize, byte(table >> 24), byte(table >> 16), byte(table >> 8), byte(table)}
		c.FromServer(h2frame(frameSettings, 0, 0, settings))
		c.FromClient(append([]byte(h2PrefaceText), h2frame(frameSettings, 0, 0, nil)...))
		id := uint32(1)
		for range int(reps) % 3000 {
			c.FromClient(h2frame(frameHeaders, flagEndHeaders, id, block))
			if newStreams {
				id += 2
			}
			checkHeld(t, ring, c, share)
		}
		c.Close()
		checkClosed(t, ring, c)
	})
}
