package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeName is a name only the test's Dial knows: a client that resolved it
// itself would fail, so a success proves the name reached Dial unresolved.
const fakeName = "orders.shop.svc.cluster.test"

type fixture struct {
	socks, http string // proxy addresses
	target      string // the backend's port as fakeName:port
	mu          sync.Mutex
	dialed      []string
}

func (f *fixture) dialedAddrs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

// start runs a backend that echoes the request path and both proxies in
// front of it, with credentials user/secret.
func start(t testing.TB) *fixture {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%x", sha256.Sum256(b))
			return
		}
		fmt.Fprintf(w, "path=%s proxyauth=%q", r.URL.Path, r.Header.Get("Proxy-Authorization"))
	}))
	t.Cleanup(backend.Close)
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	f := &fixture{target: net.JoinHostPort(fakeName, port)}
	cfg := Config{Username: "user", Password: "secret", Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		f.mu.Lock()
		f.dialed = append(f.dialed, addr)
		f.mu.Unlock()
		host, p, _ := net.SplitHostPort(addr)
		if host != fakeName {
			return nil, fmt.Errorf("dial tcp: lookup %s: no such host", host)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", p))
	}}
	ctx, cancel := context.WithCancel(context.Background())
	sl := listen(t)
	hl := listen(t)
	done := make(chan struct{}, 2)
	go func() { ServeSOCKS5(ctx, sl, cfg); done <- struct{}{} }()
	go func() { ServeHTTP(ctx, hl, cfg); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); sl.Close(); hl.Close(); <-done; <-done })
	f.socks, f.http = sl.Addr().String(), hl.Addr().String()
	return f
}

func listen(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func goClient(proxy string) *http.Client {
	u, _ := url.Parse(proxy)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func TestGoClients(t *testing.T) {
	f := start(t)
	tests := []struct {
		name, proxy string
		wantOK      bool
	}{
		{"socks5 right credentials", "socks5://user:secret@" + f.socks, true},
		{"socks5h right credentials", "socks5h://user:secret@" + f.socks, true},
		{"socks5 wrong password", "socks5://user:nope@" + f.socks, false},
		{"socks5 no credentials", "socks5://" + f.socks, false},
		{"socks5 as the JDK authenticates: the password as user.name", "socks5://secret:@" + f.socks, true},
		{"socks5 as the JDK without the password", "socks5://root:@" + f.socks, false},
		{"http right credentials", "http://user:secret@" + f.http, true},
		{"http wrong password", "http://user:nope@" + f.http, false},
		{"http no credentials", "http://" + f.http, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := goClient(tt.proxy).Get("http://" + f.target + "/hello")
			if err == nil {
				defer resp.Body.Close()
			}
			ok := err == nil && resp.StatusCode == 200
			if ok != tt.wantOK {
				t.Fatalf("served %v, want %v (err %v, resp %v)", ok, tt.wantOK, err, resp)
			}
			if !ok {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if want := `path=/hello proxyauth=""`; string(b) != want {
				t.Errorf("backend saw %q, want %q (the proxy's credentials must not reach it)", b, want)
			}
		})
	}
}

// TestConnectThroughHTTPProxy: CONNECT, as clients do for https.
func TestConnectThroughHTTPProxy(t *testing.T) {
	f := start(t)
	c, err := net.Dial("tcp", f.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", f.target, f.target)
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK")) || !bytes.Contains(b, []byte("path=/tunnelled")) {
		t.Errorf("got %q", b)
	}
}

func TestUnknownHostFails(t *testing.T) {
	f := start(t)
	for _, p := range []string{"socks5://user:secret@" + f.socks, "http://user:secret@" + f.http} {
		resp, err := goClient(p).Get("http://nowhere.invalid:80/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Errorf("%s: served a request to an unknown host", p)
			}
		}
	}
	if got := f.dialedAddrs(); len(got) != 2 || got[0] != "nowhere.invalid:80" {
		t.Errorf("dialed %q, want the name unresolved, twice", got)
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (integration/cluster/install-deps.sh installs it)")
	}
	f := start(t)
	tests := []struct {
		name string
		args []string
		want int // curl's exit status
	}{
		{"socks5h", []string{"--proxy", "socks5h://user:secret@" + f.socks}, 0},
		{"socks5h wrong password", []string{"--proxy", "socks5h://user:bad@" + f.socks}, 97},
		{"http", []string{"--proxy", "http://user:secret@" + f.http}, 0},
		{"http CONNECT", []string{"--proxytunnel", "--proxy", "http://user:secret@" + f.http}, 0},
		{"http wrong password", []string{"--proxy", "http://user:bad@" + f.http, "--fail"}, 22},
		{"http CONNECT wrong password", []string{"--proxytunnel", "--proxy", "http://user:bad@" + f.http}, 56},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "10", "--noproxy", "", "http://" + f.target + "/curl"}, tt.args...)
			out, err := exec.Command(curl, args...).CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.want {
				t.Fatalf("curl exit %d, want %d: %s", code, tt.want, out)
			}
			if code == 0 && !strings.Contains(string(out), "path=/curl") {
				t.Errorf("curl got %q", out)
			}
		})
	}
}

func TestPythonUrllib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed (integration/cluster/install-deps.sh installs it)")
	}
	f := start(t)
	script := `import os, urllib.request, sys
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except Exception as e:
    print("ERR", e); sys.exit(3)`
	for _, tt := range []struct {
		cred string
		want string
	}{{"user:secret", "path=/py"}, {"user:bad", "ERR HTTP Error 407"}} {
		cmd := exec.Command(py, "-c", script, "http://"+f.target+"/py")
		cmd.Env = []string{"http_proxy=http://" + tt.cred + "@" + f.http}
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: python printed %q, want %q", tt.cred, out, tt.want)
		}
	}
}

// TestLargeBodiesAndConcurrency: bytes arrive intact both ways, and many
// clients at once are all served.
func TestLargeBodiesAndConcurrency(t *testing.T) {
	f := start(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	want := fmt.Sprintf("%x", sha256.Sum256(body))
	for _, p := range []string{"socks5://user:secret@" + f.socks, "http://user:secret@" + f.http} {
		client := goClient(p)
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Post("http://"+f.target+"/", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					errs <- fmt.Errorf("checksum %s, want %s", b, want)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	dial := func(context.Context, string) (net.Conn, error) { return nil, nil }
	for _, c := range []Config{{Dial: dial}, {Username: "u", Password: "p"}, {Dial: dial, Username: strings.Repeat("u", 256), Password: "p"}} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}
