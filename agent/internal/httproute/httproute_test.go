package httproute

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tetherkube/tether/httpfilter"
)

// errNoConn is what a laptop that cannot be reached answers in tests.
var errNoConn = errors.New("no connection")

// backend is a loopback HTTP server (HTTP/1.1 and HTTP/2 cleartext) that
// answers "NAME PATH", and counts the connections it accepted.
type backend struct {
	name  string
	addr  string
	conns atomic.Int32
	seen  chan *http.Request // every request, when not nil
}

func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: l.Addr().String()}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *backend) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", b.addr)
}

// front starts a Router in front of app, listening on loopback; every
// connection accepted goes to ServeConn.
func front(t testing.TB, app *backend, cfg Config) (*Router, string) {
	t.Helper()
	cfg.App = app.dial
	r := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.ServeConn(context.Background(), c)
		}
	}()
	t.Cleanup(func() { l.Close(); r.Close() })
	return r, l.Addr().String()
}

func header(t testing.TB, s string) httpfilter.HeaderMatch {
	t.Helper()
	h, err := httpfilter.ParseHeader(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// oneConnClient sends every request over one connection, with HTTP/2 when h2.
func oneConnClient(h2 bool) *http.Client {
	var protos http.Protocols
	if h2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Client{Transport: &http.Transport{Protocols: &protos, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) string {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRoutesEachRequest: on one keep-alive connection (HTTP/1.1, then
// HTTP/2 cleartext), each request goes where its headers and path say,
// and each backend sees one connection for the caller's one.
func TestRoutesEachRequest(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			app, ana, bob := newBackend(t, "app", nil), newBackend(t, "ana", nil), newBackend(t, "bob", nil)
			r, addr := front(t, app, Config{})
			r.SetRoutes([]Route{
				{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-tether-user=ana")}}, Dial: ana.dial},
				{ID: "bob", Filter: httpfilter.Filter{PathPrefix: "/api/", Headers: []httpfilter.HeaderMatch{header(t, "X-Tether-User=~b.b")}}, Dial: bob.dial},
			})
			c := oneConnClient(h2)
			base := "http://" + addr
			var got []string
			got = append(got, get(t, c, base+"/a"))
			got = append(got, get(t, c, base+"/b", "X-Tether-User", "ana"))
			got = append(got, get(t, c, base+"/api/c", "x-tether-user", "bob"))
			got = append(got, get(t, c, base+"/d", "x-tether-user", "bob")) // path does not match
			got = append(got, get(t, c, base+"/e", "x-tether-user", "ana"))
			got = append(got, get(t, c, base+"/f", "x-tether-user", "carol"))
			want := []string{"app /a", "ana /b", "bob /api/c", "app /d", "ana /e", "app /f"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			for _, b := range []*backend{app, ana, bob} {
				if n := b.conns.Load(); n != 1 {
					t.Errorf("%s saw %d connections, want 1", b.name, n)
				}
			}
			s := r.Stats()
			if diff := cmp.Diff(map[string]uint64{"ana": 2, "bob": 1}, s.Routed); diff != "" || s.ToApp != 3 {
				t.Errorf("stats: routed (-want +got):\n%s to app %d, want 3", diff, s.ToApp)
			}
		})
	}
}

// TestPipelinedKeepOrder: requests written at once on one connection are
// answered in their order though they go to different places, and the
// laptop's slow answer holds back the app's next one.
func TestPipelinedKeepOrder(t *testing.T) {
	app := newBackend(t, "app", nil)
	slow := newBackend(t, "ana", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprintf(w, "ana %s", r.URL.Path)
	})
	r, addr := front(t, app, Config{})
	r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}, Dial: slow.dial}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nX-User: ana\r\n\r\n"+
		"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /4 HTTP/1.1\r\nHost: x\r\nx-user: ana\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	var got []string
	for range 4 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		got = append(got, string(b))
	}
	if diff := cmp.Diff([]string{"app /1", "ana /2", "app /3", "ana /4"}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

// TestNotHTTPGoesToTheApp: bytes that are not HTTP, a TLS handshake, and a
// caller that waits for the server to speak first all reach the app
// unchanged.
func TestNotHTTPGoesToTheApp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // the app: greets, then echoes
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "hello\n")
				io.Copy(c, c)
			}()
		}
	}()
	app := &backend{name: "app", addr: l.Addr().String()}
	r, addr := front(t, app, Config{Sniff: 100 * time.Millisecond})
	r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{PathPrefix: "/"}, Dial: func(context.Context) (net.Conn, error) {
		t.Error("a connection that is not HTTP was sent to the laptop")
		return nil, errNoConn
	}}})
	for _, send := range []string{"\x00\x01binary\n", "\x16\x03\x01\x00\x05hello\n", ""} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		if send == "" { // server speaks first
			if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
				t.Fatalf("greeting: %q, %v", line, err)
			}
			io.WriteString(c, "later\n")
			if line, err := br.ReadString('\n'); err != nil || line != "later\n" {
				t.Errorf("echo: %q, %v", line, err)
			}
		} else {
			io.WriteString(c, send)
			got := ""
			for range 2 {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				got += line
			}
			if got != "hello\n"+send {
				t.Errorf("got %q, want the greeting and %q", got, send)
			}
		}
		c.Close()
	}
	s := r.Stats()
	if s.NotHTTP != 3 || s.TLS != 1 {
		t.Errorf("stats: not HTTP %d (want 3), TLS %d (want 1)", s.NotHTTP, s.TLS)
	}
}

// TestUpgradeFollowsItsRequest: a WebSocket-style upgrade goes where its
// request's headers say, and the raw bytes after the 101 pass both ways.
func TestUpgradeFollowsItsRequest(t *testing.T) {
	app := newBackend(t, "app", nil)
	ana := newBackend(t, "ana", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			fmt.Fprint(w, "ana plain")
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.Flush()
		io.Copy(c, io.MultiReader(brw.Reader, c))
	})
	r, addr := front(t, app, Config{})
	r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}, Dial: ana.dial}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nX-User: ana\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("after the upgrade: %q, %v", line, err)
	}
}

// TestRouteGoneAndLaptopDown: a route removed sends the next request of
// the same connection to the app; a laptop that cannot be reached gets
// the caller a 502 that says so.
func TestRouteGoneAndLaptopDown(t *testing.T) {
	app, ana := newBackend(t, "app", nil), newBackend(t, "ana", nil)
	r, addr := front(t, app, Config{})
	f := httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}
	r.SetRoutes([]Route{{ID: "ana", Filter: f, Dial: ana.dial}})
	c := oneConnClient(false)
	if got := get(t, c, "http://"+addr+"/1", "x-user", "ana"); got != "ana /1" {
		t.Errorf("got %q", got)
	}
	r.SetRoutes(nil)
	if got := get(t, c, "http://"+addr+"/2", "x-user", "ana"); got != "app /2" {
		t.Errorf("after the route left: %q, want the app", got)
	}
	r.SetRoutes([]Route{{ID: "ana", Filter: f, Dial: func(context.Context) (net.Conn, error) { return nil, errNoConn }}})
	resp, err := c.Get("http://" + addr + "/3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", "http://"+addr+"/4", nil)
	req.Header.Set("x-user", "ana")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "laptop of intercept ana is not reachable") {
		t.Errorf("laptop down: %d %q, want 502 saying so", resp.StatusCode, b)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamedAnswerFlows: an answer without a length (server-sent events,
// chunked) reaches the caller as it is written, not at its end.
func TestStreamedAnswerFlows(t *testing.T) {
	gotFirst := make(chan struct{})
	app := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-gotFirst:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "data: two\n\n")
	})
	_, addr := front(t, app, Config{})
	resp, err := http.Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: one\n" {
			t.Errorf("first event %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive before the answer ended: the stream is held back")
	}
	close(gotFirst)
}

// TestExpectContinueAndInterim: a caller that waits for 100 Continue gets
// it once and its body goes through; an app's 103 Early Hints reaches the
// caller before the answer.
func TestExpectContinueAndInterim(t *testing.T) {
	app := newBackend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	})
	_, addr := front(t, app, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("first answer: %v %v, want 100 Continue", resp, err)
	}
	io.WriteString(c, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "got hello" {
		t.Errorf("after 100 Continue: %d %q", resp.StatusCode, b)
	}
	io.WriteString(c, "GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
		t.Fatalf("interim answer: %+v %v, want 103 with its Link", resp, err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("final answer: %+v %v", resp, err)
	}
}
