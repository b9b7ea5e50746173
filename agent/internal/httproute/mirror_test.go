package httproute

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tetherkube/tether/httpfilter"
)

// TestMirror: the app answers every request; the mirror route gets a copy
// of those it selects, body included; a stuck laptop holds up nobody, and
// what it cannot take is dropped, counted.
func TestMirror(t *testing.T) {
	app := newBackend(t, "app", nil)
	var mu sync.Mutex
	var copies []string
	stuck := make(chan struct{})
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/stuck" {
			<-stuck
		}
		mu.Lock()
		copies = append(copies, r.Method+" "+r.URL.Path+" "+string(b)+" "+r.Header.Get("X-User"))
		mu.Unlock()
		fmt.Fprint(w, "laptop")
	})
	defer close(stuck)
	r, addr := front(t, app, Config{MirrorQueue: 4, MirrorConns: 1, MirrorInFlight: 1, MirrorTimeout: 30 * time.Second})
	r.SetRoutes([]Route{{ID: "ana", Mirror: true, Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}, Dial: laptop.dial}})
	c := oneConnClient(false)
	post := func(path, body string, user string) string {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post("/one", "body-1", "ana"); got != "app /one" {
		t.Errorf("the app did not answer a mirrored request: %q", got)
	}
	post("/two", "body-2", "bob")
	waitFor(t, func() bool { return r.Stats().Mirrored["ana"] == 1 })
	mu.Lock()
	if diff := cmp.Diff([]string{"POST /one body-1 ana"}, copies); diff != "" {
		t.Errorf("copies (-want +got):\n%s", diff)
	}
	mu.Unlock()

	// The laptop gets stuck on one copy: at most 4 more wait in the queue
	// and 4 in the sender's next batch, the rest are dropped, and every
	// caller is answered by the app.
	for i := range 20 {
		path := fmt.Sprintf("/%d", i)
		if i == 0 {
			path = "/stuck"
		}
		if got := post(path, "x", "ana"); got != "app "+path {
			t.Fatalf("with the laptop stuck, %s: %q", path, got)
		}
	}
	waitFor(t, func() bool { return r.Stats().MirrorDropped["ana"] >= 11 })
}

// TestMirrorPipelines: copies sent by many callers at once are pipelined
// over the route's few kept-alive connections, each delivered once, in
// each connection's order; a laptop that closes its connection (an
// answer with "Connection: close") loses only the copies in flight on it,
// counted, and the next copies go over a new connection.
func TestMirrorPipelines(t *testing.T) {
	app := newBackend(t, "app", nil)
	var mu sync.Mutex
	seen := map[string]int{}
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprint(w, "laptop")
	})
	r, addr := front(t, app, Config{MirrorQueue: 1000, MirrorConns: 2, MirrorTimeout: 30 * time.Second})
	r.SetRoutes([]Route{{ID: "all", Mirror: true, Dial: laptop.dial}})
	const callers, each = 20, 25
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := oneConnClient(false)
			defer c.CloseIdleConnections()
			for j := range each {
				path := fmt.Sprintf("/%d/%d", i, j)
				if got := get(t, c, "http://"+addr+path); got != "app "+path {
					t.Errorf("%s: %q", path, got)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return r.Stats().Mirrored["all"] == callers*each })
	mu.Lock()
	if len(seen) != callers*each {
		t.Errorf("the laptop saw %d distinct copies, want %d", len(seen), callers*each)
	}
	for path, n := range seen {
		if n != 1 {
			t.Errorf("%s copied %d times", path, n)
		}
	}
	mu.Unlock()
	if n := laptop.conns.Load(); n > 2 {
		t.Errorf("the copies took %d connections to the laptop, want at most MirrorConns (2)", n)
	}
	if d := r.Stats().MirrorDropped["all"]; d != 0 {
		t.Errorf("%d copies dropped", d)
	}

	// The laptop closes a connection after one copy: at most the copies
	// pipelined behind it on that connection are lost, counted, and every
	// later copy arrives over a new connection.
	c := oneConnClient(false)
	get(t, c, "http://"+addr+"/close")
	waitFor(t, func() bool { return r.Stats().Mirrored["all"] == callers*each+1 })
	before := laptop.conns.Load()
	for i := range 10 {
		get(t, c, fmt.Sprintf("http://%s/after/%d", addr, i))
	}
	waitFor(t, func() bool {
		s := r.Stats()
		return s.Mirrored["all"]+s.MirrorDropped["all"] == callers*each+11
	})
	if s := r.Stats(); s.Mirrored["all"] != callers*each+11 {
		t.Errorf("after the laptop closed a connection: %d delivered, %d dropped; want all 11 delivered (sent one at a time)",
			s.Mirrored["all"]-callers*each, s.MirrorDropped["all"])
	}
	if laptop.conns.Load() == before && laptop.conns.Load() < 2 {
		t.Error("no new connection after the laptop closed one")
	}
}

// TestMirrorHTTP2: streams of one HTTP/2 cleartext connection are
// copied each as its own stream, concurrently, every one delivered once.
func TestMirrorHTTP2(t *testing.T) {
	app := newBackend(t, "app", nil)
	var mu sync.Mutex
	seen := map[string]int{}
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Proto+" "+r.URL.Path]++
		mu.Unlock()
		fmt.Fprint(w, "laptop")
	})
	r, addr := front(t, app, Config{MirrorTimeout: 30 * time.Second})
	r.SetRoutes([]Route{{ID: "all", Mirror: true, Dial: laptop.dial}})
	c := oneConnClient(true)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := get(t, c, fmt.Sprintf("http://%s/%d", addr, i)); got != fmt.Sprintf("app /%d", i) {
				t.Errorf("stream %d: %q", i, got)
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return r.Stats().Mirrored["all"] == 100 })
	mu.Lock()
	defer mu.Unlock()
	for i := range 100 {
		if n := seen[fmt.Sprintf("HTTP/2.0 /%d", i)]; n != 1 {
			t.Errorf("/%d copied %d times over HTTP/2", i, n)
		}
	}
}

// TestMirrorShedsNearTheCPULimit: while Shed says the agent is close to
// its CPU limit, copies are not made (counted as shed and dropped); the
// app answers every caller; once it lets go, copies flow again.
func TestMirrorShedsNearTheCPULimit(t *testing.T) {
	app := newBackend(t, "app", nil)
	var copies atomic.Int32
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		copies.Add(1)
		fmt.Fprint(w, "laptop")
	})
	var pressed atomic.Bool
	pressed.Store(true)
	r, addr := front(t, app, Config{Shed: pressed.Load})
	r.SetRoutes([]Route{{ID: "copy", Mirror: true, Dial: laptop.dial}})
	c := oneConnClient(false)
	for i := range 5 {
		if got := get(t, c, fmt.Sprintf("http://%s/shed/%d", addr, i)); got != fmt.Sprintf("app /shed/%d", i) {
			t.Fatalf("while shedding the app answered %q", got)
		}
	}
	// The copy is made (or not) after the caller has its answer.
	waitFor(t, func() bool { return r.Stats().MirrorShed["copy"] == 5 })
	pressed.Store(false)
	if got := get(t, c, "http://"+addr+"/after"); got != "app /after" {
		t.Fatalf("after shedding the app answered %q", got)
	}
	waitFor(t, func() bool { return r.Stats().Mirrored["copy"] == 1 })
	st := r.Stats()
	if st.MirrorShed["copy"] != 5 || st.MirrorDropped["copy"] != 5 || copies.Load() != 1 {
		t.Errorf("shed %d, dropped %d, copies at the laptop %d; want 5, 5, 1", st.MirrorShed["copy"], st.MirrorDropped["copy"], copies.Load())
	}
}

// fakeRecorder keeps what a mirror connection's recorder is given.
type fakeRecorder struct {
	mu   *sync.Mutex
	got  *[]string
	body bytes.Buffer
}

func (f *fakeRecorder) AnswerBody(*http.Response) io.Writer {
	f.body.Reset()
	return &f.body
}

func (f *fakeRecorder) Record(req *http.Request, body []byte, sent, head, end time.Time, resp *http.Response, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answer := "no answer"
	if resp != nil {
		answer = fmt.Sprintf("%d %s", resp.StatusCode, f.body.String())
	}
	if sent.IsZero() || head.Before(sent) || end.Before(head) || (resp == nil) != (err != nil) {
		answer += fmt.Sprintf(" (bad times or error: %v %v %v %v)", sent, head, end, err)
	}
	*f.got = append(*f.got, req.Method+" "+req.URL.Path+" "+string(body)+" -> "+answer)
}

// TestMirrorRecordsWhatItWroteAndRead: with a MirrorRecorder, each copy
// and the laptop's answer go to the recorder of their connection as the
// mirror wrote and read them, a copy the laptop hung up on without an
// answer too; the connection does not go through Upstream, whose
// recorder would parse the same bytes again.
func TestMirrorRecordsWhatItWroteAndRead(t *testing.T) {
	app := newBackend(t, "app", nil)
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/hangup" {
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
			return
		}
		fmt.Fprintf(w, "laptop got %s", b)
	})
	var mu sync.Mutex
	var got []string
	var wrapped atomic.Int32
	cfg := Config{MirrorConns: 1, MirrorTimeout: 30 * time.Second,
		Upstream: func(c net.Conn, src string, _ *Route) net.Conn {
			if src == "mirror" {
				wrapped.Add(1)
			}
			return c
		},
		MirrorRecorder: func(*Route) MirrorRecorder { return &fakeRecorder{mu: &mu, got: &got} }}
	r, addr := front(t, app, cfg)
	r.SetRoutes([]Route{{ID: "m", Mirror: true, Dial: laptop.dial}})
	c := oneConnClient(false)
	for _, p := range []string{"/one", "/hangup", "/two"} {
		resp, err := c.Post("http://"+addr+p, "text/plain", strings.NewReader("body"+p))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// One copy at a time: the hang-up loses no other copy.
		waitFor(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == map[string]int{"/one": 1, "/hangup": 2, "/two": 3}[p]
		})
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /one body/one -> 200 laptop got body/one", "POST /hangup body/hangup -> no answer",
		"POST /two body/two -> 200 laptop got body/two"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recorded (-want +got):\n%s", diff)
	}
	if n := wrapped.Load(); n != 0 {
		t.Errorf("%d mirror connections went through Upstream as well", n)
	}
}

// redactingRecorder overwrites a recorded request's header values in
// place, as the agent's redaction does.
type redactingRecorder struct{}

func (redactingRecorder) AnswerBody(*http.Response) io.Writer { return io.Discard }
func (redactingRecorder) Record(req *http.Request, _ []byte, _, _, _ time.Time, _ *http.Response, _ error) {
	for _, vs := range req.Header {
		for i := range vs {
			vs[i] = "[REDACTED]"
		}
	}
}

// TestMirrorCopiesTheRequestAsSent: two mirrors of one request each get
// the caller's header less its hop-by-hop fields and Expect (the copy's
// body goes at once), whatever the other copy's recorder does to its own.
func TestMirrorCopiesTheRequestAsSent(t *testing.T) {
	app := newBackend(t, "app", nil)
	var mu sync.Mutex
	var got []string
	laptop := func(name string) *backend {
		return newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, fmt.Sprintf("%s %s auth=%q hop=%q expect=%q body=%s", name, r.URL.Path,
				r.Header.Get("Authorization"), r.Header.Get("X-Hop"), r.Header.Get("Expect"), b))
			mu.Unlock()
		})
	}
	r, addr := front(t, app, Config{MirrorTimeout: 30 * time.Second,
		MirrorRecorder: func(*Route) MirrorRecorder { return redactingRecorder{} }})
	r.SetRoutes([]Route{{ID: "a", Mirror: true, Dial: laptop("a").dial}, {ID: "b", Mirror: true, Dial: laptop("b").dial}})
	c := oneConnClient(false)
	for i := range 3 {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/%d", addr, i), strings.NewReader("hello"))
		req.Header.Set("Authorization", "Bearer s3cret")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "1")
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitFor(t, func() bool { return r.Stats().Mirrored["a"] == 3 && r.Stats().Mirrored["b"] == 3 })
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	var want []string
	for _, name := range []string{"a", "b"} {
		for i := range 3 {
			want = append(want, fmt.Sprintf(`%s /%d auth="Bearer s3cret" hop="" expect="" body=hello`, name, i))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("copies (-want +got):\n%s", diff)
	}
}

// TestMirrorLaptopAnswersEarly: a laptop that answers copies before it
// reads them (here: before they are written) leaves the sender the
// requests it is still writing; the reader's recorder, which changes
// the header it is given, gets its own (run with -race).
func TestMirrorLaptopAnswersEarly(t *testing.T) {
	const copies = 200
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
				defer c.Close()
				c.Write(bytes.Repeat([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), copies))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", l.Addr().String())
	}
	app := newBackend(t, "app", nil)
	r, addr := front(t, app, Config{MirrorConns: 1, MirrorTimeout: 30 * time.Second,
		MirrorRecorder: func(*Route) MirrorRecorder { return redactingRecorder{} }})
	r.SetRoutes([]Route{{ID: "early", Mirror: true, Dial: dial}})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := oneConnClient(false)
			defer c.CloseIdleConnections()
			for j := range copies / 4 {
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/%d/%d", addr, i, j), nil)
				req.Header.Set("Authorization", "Bearer s3cret")
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { s := r.Stats(); return s.Mirrored["early"]+s.MirrorDropped["early"] == copies })
}

// TestMirrorCopy: a request the router did not carry (read from packets)
// is copied to each mirror route whose filter matches, HTTP/1 and HTTP/2,
// with its body and without its connection's hop-by-hop headers; not to
// a route that takes requests; a body over the cap is dropped, counted.
func TestMirrorCopy(t *testing.T) {
	app := newBackend(t, "app", nil)
	var mu sync.Mutex
	var copies []string
	laptop := newBackend(t, "laptop", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		copies = append(copies, fmt.Sprintf("%s %s %s %s %s keep-alive=%q", r.Proto, r.Method, r.URL.Path, b, r.Header.Get("X-User"), r.Header.Get("Keep-Alive")))
		mu.Unlock()
		fmt.Fprint(w, "laptop")
	})
	r, _ := front(t, app, Config{MirrorTimeout: 30 * time.Second, MirrorBodyCap: 8})
	ana := httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(t, "x-user=ana")}}
	r.SetRoutes([]Route{
		{ID: "ana", Mirror: true, Filter: ana, Dial: laptop.dial},
		{ID: "takes", Filter: ana, Dial: laptop.dial}, // not a mirror: nothing of MirrorCopy's
	})
	copyOf := func(proto int, path, user, body string) {
		req, _ := http.NewRequest("POST", "http://orders"+path, nil)
		req.ProtoMajor = proto
		req.Header.Set("X-User", user)
		req.Header.Set("Connection", "keep-alive, Keep-Alive")
		req.Header.Set("Keep-Alive", "timeout=5")
		r.MirrorCopy(req, []byte(body))
	}
	copyOf(1, "/one", "ana", "body-1")
	copyOf(1, "/bob", "bob", "body-2")
	copyOf(2, "/two", "ana", "body-3")
	copyOf(1, "/big", "ana", "123456789")
	waitFor(t, func() bool { return r.Stats().Mirrored["ana"] == 2 })
	if s := r.Stats(); s.MirrorDropped["ana"] != 1 || s.Routed["takes"] != 0 {
		t.Errorf("dropped %d (want 1: the body over the cap), routed %d (want 0)", s.MirrorDropped["ana"], s.Routed["takes"])
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(copies)
	want := []string{`HTTP/1.1 POST /one body-1 ana keep-alive=""`, `HTTP/2.0 POST /two body-3 ana keep-alive=""`}
	if diff := cmp.Diff(want, copies); diff != "" {
		t.Errorf("copies (-want +got):\n%s", diff)
	}
}
