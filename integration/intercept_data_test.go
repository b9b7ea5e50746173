//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherkube/tether/integration/demoapp"
)

// TestInterceptDataPath checks what crosses an intercept: 100 MB each way
// with checksums, 200 concurrent connections, and a keep-alive connection.
// The laptop side is the orders app itself, run in this test process.
func TestInterceptDataPath(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: demoapp.NewServer("laptop").Handler()}
	go srv.Serve(l)
	defer srv.Close()
	local := l.Addr().String()
	e.mustTether("intercept", "orders", "--port", "http:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	base := "http://orders." + e.ns + ".svc.cluster.local"
	const size = 100 << 20

	t.Run("upload 100 MB", func(t *testing.T) {
		out, ok := e.exec(client, "/tether-demo", "upload", base, strconv.Itoa(size))
		if !ok {
			t.Fatalf("upload failed: %s", out)
		}
		m := regexp.MustCompile(`sent (\d+) sha256 (\w+)`).FindStringSubmatch(out)
		var got struct {
			Bytes  int64  `json:"bytes"`
			SHA256 string `json:"sha256"`
		}
		i := strings.Index(out, "{")
		if m == nil || i < 0 || json.Unmarshal([]byte(out[i:]), &got) != nil {
			t.Fatalf("unexpected output: %s", out)
		}
		if strconv.FormatInt(got.Bytes, 10) != m[1] || got.SHA256 != m[2] {
			t.Errorf("the laptop received %d bytes sha256 %s; the pod sent %s bytes sha256 %s", got.Bytes, got.SHA256, m[1], m[2])
		}
	})

	t.Run("download 100 MB", func(t *testing.T) {
		resp, err := http.Get(fmt.Sprintf("http://%s/bytes?n=%d", local, size))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("received %d sha256 %s served-by laptop", size, hex.EncodeToString(h.Sum(nil)))
		out, ok := e.exec(client, "/tether-demo", "download", fmt.Sprintf("%s/bytes?n=%d", base, size))
		if !ok || strings.TrimSpace(out) != want {
			t.Errorf("download through the intercept:\n got %s\nwant %s", strings.TrimSpace(out), want)
		}
	})

	t.Run("200 concurrent connections", func(t *testing.T) {
		out, ok := e.exec(client, "/tether-demo", "parallel", base+"/whoami", "200")
		if want := "ok 200 of 200 served-by map[laptop:200]"; !ok || !strings.Contains(out, want) {
			t.Errorf("got %q, want %q", strings.TrimSpace(out), want)
		}
	})

	keepAliveThroughIntercept(t, e, client, base)

	t.Run("laptop process gone", func(t *testing.T) {
		// Stop the local server: callers must get a prompt error, not hang
		// until their timeout.
		srv.Close()
		out, ok := e.exec(client, "/tether-demo", "get", base+"/whoami")
		if ok {
			t.Fatalf("request succeeded with the local process gone: %s", out)
		}
		if strings.Contains(out, "deadline exceeded") || strings.Contains(out, "Timeout") {
			t.Errorf("the caller waited for its timeout instead of failing at once: %s", out)
		}
	})
}

func keepAliveThroughIntercept(t *testing.T, e *env, client, base string) {
	t.Run("keep-alive", func(t *testing.T) {
		out, ok := e.exec(client, "/tether-demo", "keepalive", base+"/orders/7", "50")
		if want := "ok 50 of 50 reused 49"; !ok || !strings.Contains(out, want) {
			t.Errorf("got %q, want %q", strings.TrimSpace(out), want)
		}
	})
}
