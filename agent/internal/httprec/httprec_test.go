package httprec

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/tetherkube/tether/recording"
)

// recordingProxy listens on loopback and joins each connection to backend
// through the recorder, as the agent does; it returns the proxy's address.
func recordingProxy(t testing.TB, ring *Ring, backend string, opts Options) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				b, err := net.Dial("tcp", backend)
				if err != nil {
					c.Close()
					return
				}
				rc := ring.NewConn(Meta{Pod: "orders-1", Port: 8080, Source: c.RemoteAddr().String(), Destination: recording.ToApp}, opts)
				Join(c, b, rc)
			}()
		}
	}()
	return l.Addr().String()
}

// held returns what the ring holds, failing t when it cannot be read.
func held(t testing.TB, r *Ring) []*recording.Exchange {
	t.Helper()
	got, err := r.Exchanges(nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitExchanges waits until the ring holds n exchanges.
func waitExchanges(t testing.TB, r *Ring, n int) []*recording.Exchange {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := held(t, r)
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("ring holds %d exchanges, want %d: %+v", len(got), n, r.Stats())
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Content-Type", "text/plain")
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/fail":
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Set-Cookie", "session=secret")
			fmt.Fprintf(w, `{"method":%q,"got":%d}`, r.Method, len(body))
		}
	})
}

func TestHTTP1RealClientAndServer(t *testing.T) {
	srv := httptest.NewServer(echoHandler())
	defer srv.Close()
	ring := NewRing(64 << 20)
	addr := recordingProxy(t, ring, strings.TrimPrefix(srv.URL, "http://"), DefaultOptions())
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // keep-alive on one connection
	do := func(method, path, body string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if body != "" && strings.HasPrefix(path, "/upload-chunked") {
			req.ContentLength = -1 // send chunked
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	do("GET", "/orders/7?x=1", "", map[string]string{"Authorization": "Bearer abc", "Cookie": "a=b", "X-Trace": "1"})
	do("POST", "/orders", `{"item":"kettle"}`, map[string]string{"Content-Type": "application/json"})
	do("POST", "/upload-chunked", "0123456789", nil)
	do("GET", "/chunked", "", nil)
	do("HEAD", "/orders/7", "", nil)
	do("GET", "/nocontent", "", nil)
	do("GET", "/fail", "", nil)
	got := waitExchanges(t, ring, 7)

	type row struct {
		Method, Target string
		Status         int
		ReqBody        string
		RespBody       string
	}
	var rows []row
	for _, e := range got {
		rows = append(rows, row{e.Request.Method, e.Request.Target, e.Status(), string(e.Request.Body), string(e.Response.Body)})
	}
	want := []row{
		{"GET", "/orders/7?x=1", 200, "", `{"method":"GET","got":0}`},
		{"POST", "/orders", 200, `{"item":"kettle"}`, `{"method":"POST","got":17}`},
		{"POST", "/upload-chunked", 200, "0123456789", `{"method":"POST","got":10}`},
		{"GET", "/chunked", 200, "", "part1-part2"},
		{"HEAD", "/orders/7", 200, "", ""},
		{"GET", "/nocontent", 204, "", ""},
		{"GET", "/fail", 500, "", "{\"error\":\"boom\"}\n"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("recorded\n%v\nwant\n%v", rows, want)
	}
	first := got[0]
	if first.Request.Header.Get("Authorization") != recording.Redacted || first.Request.Header.Get("Cookie") != recording.Redacted ||
		first.Request.Header.Get("X-Trace") != "1" || first.Response.Header.Get("Set-Cookie") != recording.Redacted {
		t.Errorf("redaction: request %v, response %v", first.Request.Header, first.Response.Header)
	}
	if first.Pod != "orders-1" || first.Destination != recording.ToApp || first.Proto != "HTTP/1.1" || first.Request.Host != addr || first.ID != 1 {
		t.Errorf("metadata: %+v", first)
	}
	for i, e := range got {
		if e.Error != "" || e.Latency() <= 0 || e.ID != uint64(i+1) {
			t.Errorf("exchange %d: error %q, latency %v, id %d", i, e.Error, e.Latency(), e.ID)
		}
	}
}

// rawExchange writes raw bytes to the backend through the recorder and
// returns what the client read back.
func rawExchange(t *testing.T, ring *Ring, backend http.Handler, request string) string {
	t.Helper()
	srv := httptest.NewServer(backend)
	defer srv.Close()
	addr := recordingProxy(t, ring, strings.TrimPrefix(srv.URL, "http://"), DefaultOptions())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(request))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestHTTP1Pipelined(t *testing.T) {
	ring := NewRing(1 << 20)
	out := rawExchange(t, ring, echoHandler(),
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if strings.Count(out, "HTTP/1.1 200") != 3 {
		t.Fatalf("the client did not get three answers:\n%s", out)
	}
	got := waitExchanges(t, ring, 3)
	for i, want := range []string{"/a", "/b", "/c"} {
		if got[i].Request.Target != want || got[i].Status() != 200 {
			t.Errorf("exchange %d: %s -> %d, want %s -> 200", i, got[i].Request.Target, got[i].Status(), want)
		}
	}
	if !strings.Contains(string(got[1].Response.Body), `"got":3`) {
		t.Errorf("pipelined POST's answer: %s", got[1].Response.Body)
	}
}

func TestNotHTTPPassesThrough(t *testing.T) {
	// A backend that echoes raw bytes: the caller must get them unchanged.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ring := NewRing(1 << 20)
	addr := recordingProxy(t, ring, l.Addr().String(), DefaultOptions())
	garbage := bytes.Repeat([]byte{0x16, 0x03, 0x01, 0x00, 0xff, 'G', 'E', 'T'}, 4096)
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	go func() { c.Write(garbage); c.(*net.TCPConn).CloseWrite() }()
	back, _ := io.ReadAll(c)
	if !bytes.Equal(back, garbage) {
		t.Fatalf("binary traffic changed: %d bytes back of %d", len(back), len(garbage))
	}
	time.Sleep(50 * time.Millisecond)
	if st := ring.Stats(); st.NotHTTP != 1 || st.Exchanges != 0 || st.InflightBytes != 0 {
		t.Errorf("stats %+v; want one not-HTTP connection, nothing recorded or reserved", st)
	}
}

func TestHalfRequestAndUpgrade(t *testing.T) {
	ring := NewRing(1 << 20)
	rawExchange(t, ring, echoHandler(), "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
	got := waitExchanges(t, ring, 1)
	// Go's server answers what it read before the end; either way the
	// part that came is recorded as it came.
	if h := got[0]; string(h.Request.Body) != "only-part" || h.Request.BodySize != 9 || (h.Error == "" && h.Response == nil) {
		t.Errorf("half request: %+v", h)
	}

	upgrade := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, buf, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf.Flush()
		io.Copy(c, buf) // echo the new protocol's bytes
	})
	ring = NewRing(1 << 20)
	out := rawExchange(t, ring, upgrade, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
	if !strings.HasSuffix(out, "\x81\x05hello") {
		t.Errorf("upgraded bytes not passed: %q", out)
	}
	time.Sleep(50 * time.Millisecond)
	if st := ring.Stats(); st.Upgraded != 1 || st.Exchanges != 0 {
		t.Errorf("stats %+v; want one upgraded connection, unrecorded", st)
	}
}

func TestBodyCapAndBudget(t *testing.T) {
	srv := httptest.NewServer(echoHandler())
	defer srv.Close()
	ring := NewRing(4 << 20)
	opts := DefaultOptions()
	opts.BodyCap = 64 << 10
	addr := recordingProxy(t, ring, strings.TrimPrefix(srv.URL, "http://"), opts)
	big := strings.Repeat("x", 1<<20)
	for i := range 100 {
		resp, err := http.Post(fmt.Sprintf("http://%s/upload/%d", addr, i), "text/plain", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for ring.Stats().Exchanges < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := ring.Stats()
	if st.StoredBytes+st.InflightBytes > st.BudgetBytes || st.Evicted == 0 || st.Exchanges != 100 {
		t.Fatalf("stats %+v: the budget must hold and the oldest go", st)
	}
	kept := held(t, ring)
	if kept[len(kept)-1].Request.Target != "/upload/99" || kept[0].ID != st.Evicted+1 {
		t.Errorf("held ids %d..%d, evicted %d: the oldest must be the ones dropped", kept[0].ID, kept[len(kept)-1].ID, st.Evicted)
	}
	last := kept[len(kept)-1].Request
	if !last.Truncated || last.BodySize != 1<<20 || len(last.Body) != 64<<10 {
		t.Errorf("truncation: size %d, kept %d, truncated %v", last.BodySize, len(last.Body), last.Truncated)
	}
}

func TestHTTP2Cleartext(t *testing.T) {
	h2s := &http2.Server{}
	srv := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write(append([]byte("echo:"), body...))
		w.Header().Set("Grpc-Status", "0")
	}), h2s))
	defer srv.Close()
	ring := NewRing(1 << 20)
	addr := recordingProxy(t, ring, strings.TrimPrefix(srv.URL, "http://"), DefaultOptions())
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		return net.Dial(network, a)
	}}
	client := &http.Client{Transport: tr}
	for i := range 3 {
		resp, err := client.Post(fmt.Sprintf("http://%s/orders.Orders/Get%d", addr, i), "application/grpc", strings.NewReader(fmt.Sprintf("msg%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := waitExchanges(t, ring, 3)
	for i, e := range got {
		if e.Proto != "HTTP/2.0" || e.Request.Method != "POST" || e.Request.Target != fmt.Sprintf("/orders.Orders/Get%d", i) ||
			string(e.Request.Body) != fmt.Sprintf("msg%d", i) || e.Status() != 200 || string(e.Response.Body) != fmt.Sprintf("echo:msg%d", i) ||
			e.Response.Trailer.Get("Grpc-Status") != "0" {
			t.Errorf("exchange %d: %+v, response %+v", i, e, e.Response)
		}
	}
}

// FuzzHTTP1 feeds arbitrary bytes as both directions: the parser must not
// panic, and whatever it keeps must stay within the ring's budget.
func FuzzHTTP1(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 3)
	f.Add([]byte("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), 7)
	f.Add([]byte(h2PrefaceText+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), []byte("\x00\x00\x00\x04\x01\x00\x00\x00\x00"), 1)
	f.Fuzz(func(t *testing.T, client, server []byte, split int) {
		ring := NewRing(64 << 10)
		opts := DefaultOptions()
		opts.BodyCap, opts.MaxHead = 4096, 4096
		c := ring.NewConn(Meta{}, opts)
		if split <= 0 {
			split = 1
		}
		for len(client) > 0 || len(server) > 0 {
			n := min(split, len(client))
			c.FromClient(client[:n])
			client = client[n:]
			m := min(split, len(server))
			c.FromServer(server[:m])
			server = server[m:]
		}
		c.Close()
		st := ring.Stats()
		if st.StoredBytes+st.InflightBytes > st.BudgetBytes || st.InflightBytes != 0 {
			t.Fatalf("budget broken: %+v", st)
		}
	})
}

// TestAnswerBeforeItsRequestIsParsed: the app answers while the agent is
// still writing the request upstream; the answer is held and paired once
// the request is parsed.
func TestAnswerBeforeItsRequestIsParsed(t *testing.T) {
	ring := NewRing(1 << 20)
	c := ring.NewConn(Meta{Pod: "p"}, DefaultOptions())
	c.BeforeClientWrite()
	c.FromServer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if got := held(t, ring); len(got) != 0 {
		t.Fatalf("recorded before the request was parsed: %+v", got)
	}
	c.AfterClientWrite([]byte("GET /early HTTP/1.1\r\nHost: x\r\n\r\n"))
	got := held(t, ring)
	if len(got) != 1 || got[0].Request.Target != "/early" || got[0].Status() != 200 || string(got[0].Response.Body) != "ok" {
		t.Fatalf("recorded %+v", got)
	}

	// Answers flowing while a request never finishes being written stop
	// the recording of that connection past the bound, not the memory.
	c = ring.NewConn(Meta{}, DefaultOptions())
	c.BeforeClientWrite()
	for range 2 * maxHeld / 4096 {
		c.FromServer(make([]byte, 4096))
	}
	if c.heldBytes() > maxHeld {
		t.Errorf("held %d bytes, bound %d", c.heldBytes(), maxHeld)
	}
}

// TestConnectionsCountedOnceTheyCarryBytes: a connection whose caller
// sends no byte (a readiness probe the agent answered, a bare connect,
// even one an HTTP/2 server greeted with its SETTINGS first) is not
// counted as watched; one that carries a request is, once.
func TestConnectionsCountedOnceTheyCarryBytes(t *testing.T) {
	ring := NewRing(1 << 20)
	silent := ring.NewConn(Meta{Pod: "p", Source: "10.0.0.1:1"}, Options{})
	silent.Close()
	greeted := ring.NewConn(Meta{Pod: "p", Source: "10.0.0.1:3"}, Options{})
	greeted.FromServer([]byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00")) // an empty SETTINGS frame
	greeted.Close()
	if n := ring.Stats().Connections; n != 0 {
		t.Errorf("a connection whose caller sent no byte counted: %d", n)
	}
	c := ring.NewConn(Meta{Pod: "p", Source: "10.0.0.1:2"}, Options{})
	c.FromClient([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.FromServer([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	c.FromClient([]byte("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.Close()
	if n := ring.Stats().Connections; n != 1 {
		t.Errorf("connections = %d, want 1", n)
	}
}

// TestObserveSeesExchangesBeforeRedaction: Observe gets each exchange
// kept, with the caller's Authorization as sent, while the ring keeps it
// redacted; a skipped exchange is not observed.
func TestObserveSeesExchangesBeforeRedaction(t *testing.T) {
	srv := httptest.NewServer(echoHandler())
	defer srv.Close()
	ring := NewRing(1 << 20)
	var mu sync.Mutex
	var seen []string
	opts := DefaultOptions()
	opts.Skip = func(ex *recording.Exchange) bool { return ex.Request.Target == "/skipped" }
	opts.Observe = func(ex *recording.Exchange) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, ex.Request.Method+" "+ex.Request.Target+" "+ex.Request.Header.Get("Authorization")+" "+string(ex.Request.Body))
	}
	addr := recordingProxy(t, ring, srv.Listener.Addr().String(), opts)
	for _, path := range []string{"/skipped", "/orders"} {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader("abc"))
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := waitExchanges(t, ring, 1)
	if a := got[0].Request.Header.Get("Authorization"); a == "Bearer s3cret" {
		t.Errorf("the ring kept Authorization %q, want it redacted", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"POST /orders Bearer s3cret abc"}; !slices.Equal(seen, want) {
		t.Errorf("observed %q, want %q", seen, want)
	}
}
