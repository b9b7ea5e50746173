package httprec

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
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
	// The proxy closes its side, and so the recorder's connection, after
	// the client's close reaches it: wait for that, not just the limit.
	deadline := time.Now().Add(5 * time.Second)
	for st := ring.Stats(); (st.Limited == 0 || st.InflightBytes != 0) && time.Now().Before(deadline); st = ring.Stats() {
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
