//go:build integration

package integration

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tetherkube/tether/integration/demoapp"
)

// received is what the laptop's server saw of one request.
type received struct {
	Method, Path, Body, Auth, RequestID string
}

// laptopApp runs the demo app on loopback, as a developer's process under a
// debugger would; bump makes GET /orders/7 answer qty 5 instead of 1 (the
// "fix" --diff must report). It records what it received.
type laptopApp struct {
	port int
	bump atomic.Bool
	mu   sync.Mutex
	got  []received
}

func newLaptopApp(t *testing.T) *laptopApp {
	t.Helper()
	a := &laptopApp{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := demoapp.NewServer("laptop").Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.got = append(a.got, received{r.Method, r.URL.Path, string(body), r.Header.Get("Authorization"), r.Header.Get("X-Request-Id")})
		a.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if a.bump.Load() && r.URL.Path == "/orders/7" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":7,"item":"grinder","qty":5}`+"\n")
			return
		}
		app.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	a.port = l.Addr().(*net.TCPAddr).Port
	return a
}

func (a *laptopApp) take() []received {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := a.got
	a.got = nil
	return got
}

func TestReplay(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether("record", "orders", "--port", "http")
	base := "http://orders." + e.ns + ".svc.cluster.local"
	e.exec(client, "/tether-demo", "get", base+"/orders/7", "Authorization: Bearer s3cret", "X-Request-Id: r-1")
	e.exec(client, "/tether-demo", "post", base+"/orders/42/checkout", `{"coupon":"HALFOFF"}`)
	rows := e.requestsList()
	if len(rows) != 2 {
		t.Fatalf("recorded %+v", rows)
	}
	get, checkout := rows[0].ID, rows[1].ID
	lap := newLaptopApp(t)
	local := "local:" + strconv.Itoa(lap.port)

	t.Run("to the laptop, same request, redacted header left out", func(t *testing.T) {
		out := e.mustTether("replay", "orders", get, checkout, "--to", local)
		got := lap.take()
		want := []received{{"GET", "/orders/7", "", "", "r-1"}, {"POST", "/orders/42/checkout", `{"coupon":"HALFOFF"}`, "", ""}}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("the laptop received %+v, want %+v\n%s", got, want, out)
		}
		if !strings.Contains(out, "2 sent (1 x 200, 1 x 500)") {
			t.Errorf("summary:\n%s", out)
		}
		e.mustTether("replay", "orders", get, "--to", local, "--header", "Authorization: Bearer dev")
		if got := lap.take(); len(got) != 1 || got[0].Auth != "Bearer dev" {
			t.Errorf("with --header: %+v", got)
		}
	})

	t.Run("diff", func(t *testing.T) {
		out := e.mustTether("replay", "orders", get, checkout, "--to", local, "--diff", "--ignore-header", "X-Served-By")
		if strings.Count(out, "same as recorded") != 2 || !strings.Contains(out, "0 of 2 answers differ") {
			t.Errorf("unchanged handler:\n%s", out)
		}
		lap.bump.Store(true)
		defer lap.bump.Store(false)
		out, _, code := e.tether("replay", "orders", get, "--to", local, "--diff", "--ignore-header", "X-Served-By", "-n", e.ns)
		if code != 3 || !strings.Contains(out, "body $.qty: 1 -> 5") || strings.Count(out, "    ") != 1 {
			t.Errorf("changed field: exit %d, want 3 and exactly the qty difference:\n%s", code, out)
		}
	})

	t.Run("HAR export validates and replays", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "orders.har")
		e.mustTether("requests", "export", "orders", "-f", file)
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		validateHAR(t, raw)
		lap.take()
		e.mustTether("replay", "--from", file, "--to", "http://127.0.0.1:"+strconv.Itoa(lap.port))
		if got := lap.take(); len(got) != 2 || got[0].Path != "/orders/7" || got[1].Body != `{"coupon":"HALFOFF"}` {
			t.Errorf("replayed from the HAR file: %+v", got)
		}
	})

	t.Run("into the cluster", func(t *testing.T) {
		out := e.mustTether("replay", "orders", checkout, "--to", "cluster", "--count", "3", "--diff", "--ignore-header", "X-Served-By")
		if !strings.Contains(out, "3 sent (3 x 500)") || !strings.Contains(out, "0 of 3 answers differ") {
			t.Errorf("replay into the cluster:\n%s", out)
		}
		// The replays took the recorded path: the agent recorded them too.
		if got := e.requestsList("--path", "/orders/42/checkout"); len(got) != 4 {
			t.Errorf("recorded checkouts after 3 replays: %d, want 4", len(got))
		}
	})

	t.Run("to the intercept's local port", func(t *testing.T) {
		e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(lap.port))
		defer e.mustTether("leave", "orders")
		lap.take()
		out := e.mustTether("replay", "orders", get, "--to", "local")
		if got := lap.take(); len(got) != 1 || got[0].Path != "/orders/7" {
			t.Errorf("--to local with an intercept: %+v\n%s", got, out)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"replay", "orders", get}, "--to is required"},
			{[]string{"replay", "orders", get, "--to", "ftp://x"}, "--to"},
			{[]string{"replay", "orders", get, "--to", "local:99999"}, "local:PORT"},
			{[]string{"replay", "orders", "--to", local, "--rate", "fast"}, "--rate"},
			{[]string{"replay", "orders", "--to", local, "--rate", "5/s", "--speed", "2x"}, "exclude"},
			{[]string{"replay", "--from", "/nonexistent.har", "--to", local}, "nonexistent"},
			{[]string{"replay", "orders", "999", "--to", local}, "no recorded exchange"},
		} {
			_, stderr, code := e.tether(append(tc.args, "-n", e.ns)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("tether %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
			}
		}
	})
}

// validateHAR checks a HAR document against the HAR 1.2 JSON Schema in
// recording/testdata.
func validateHAR(t *testing.T, raw []byte) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(), "recording", "testdata", "har-1.2.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("har.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("har.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the export is not JSON: %v", err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Fatalf("the HAR export does not validate: %v", err)
	}
}
