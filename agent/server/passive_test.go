package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/agent/internal/httproute"
	"github.com/tetherkube/tether/recording"
)

// h2cServer serves h on loopback over HTTP/2 with prior knowledge (as
// gRPC speaks it); it returns the address.
func h2cServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h2c.NewHandler(h, &http2.Server{})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestPassiveCopyHTTP2: a gRPC-shaped call over h2c, recorded as the tap
// records (the recorder's Observe), becomes a copy that reaches a mirror
// over HTTP/2 with its path, body and the headers gRPC servers need.
func TestPassiveCopyHTTP2(t *testing.T) {
	app := h2cServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Write([]byte{0, 0, 0, 0, 2, 8, 1})
	})
	copies := make(chan string, 4)
	laptop := h2cServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		copies <- fmt.Sprintf("%s %s %s %x te=%s type=%s", r.Proto, r.Method, r.URL.Path, b, r.Header.Get("Te"), r.Header.Get("Content-Type"))
		w.Header().Set("Content-Type", "application/grpc")
	})

	// The recorder, as the tap feeds it: what the exchange's observer sees
	// becomes a copy at once.
	seen := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	opts := httprec.DefaultOptions()
	opts.Observe = func(ex *recording.Exchange) {
		if req, body, whole := passiveCopy(ex); req != nil && whole {
			seen <- req
			bodies <- body
		}
	}
	ring := httprec.NewRing(1 << 20)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", app)
			if err != nil {
				c.Close()
				return
			}
			go httprec.Join(c, up, ring.NewConn(httprec.Meta{Pod: "orders-1", Port: 8080, Source: c.RemoteAddr().String(), Destination: recording.ToApp}, opts))
		}
	}()
	client := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
	msg := []byte{0, 0, 0, 0, 5, 10, 3, 'a', 'n', 'a'}
	req, _ := http.NewRequest("POST", "http://"+front.Addr().String()+"/helloworld.Greeter/SayHello", strings.NewReader(string(msg)))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	var copied *http.Request
	select {
	case copied = <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the recorder observed no whole exchange")
	}
	body := <-bodies
	if copied.ProtoMajor != 2 {
		t.Errorf("the copy's protocol: %s, want HTTP/2.0", copied.Proto)
	}

	r := httproute.New(httproute.Config{App: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", app)
	}})
	defer r.Close()
	r.SetRoutes([]httproute.Route{{ID: "m", Mirror: true, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", laptop)
	}}})
	r.MirrorCopy(copied, body)
	select {
	case got := <-copies:
		if want := fmt.Sprintf("HTTP/2.0 POST /helloworld.Greeter/SayHello %x te=trailers type=application/grpc", msg); got != want {
			t.Errorf("the mirror got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no copy reached the mirror: %+v", r.Stats())
	}
}
