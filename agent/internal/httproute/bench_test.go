package httproute

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/tetherkube/tether/httpfilter"
	"github.com/tetherkube/tether/tunnel"
)

// BenchmarkKeepAlive: sequential GETs on one connection, through the router
// (a filtered route that matches none) and through a plain byte relay, the
// path a port takes without filters.
func BenchmarkKeepAlive(b *testing.B) {
	app := newBackend(b, "app", nil)
	b.Run("router", func(b *testing.B) {
		r, addr := front(b, app, Config{})
		r.SetRoutes([]Route{{ID: "ana", Filter: httpfilter.Filter{Headers: []httpfilter.HeaderMatch{header(b, "x-user=ana")}},
			Dial: func(context.Context) (net.Conn, error) { return nil, errNoConn }}})
		benchGets(b, "http://"+addr+"/orders/7")
	})
	b.Run("relay", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					u, err := app.dial(context.Background())
					if err != nil {
						c.Close()
						return
					}
					tunnel.Join(c, u)
				}()
			}
		}()
		benchGets(b, "http://"+l.Addr().String()+"/orders/7")
	})
}

func benchGets(b *testing.B, url string) {
	c := oneConnClient(false)
	defer c.CloseIdleConnections()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

var _ = http.StatusOK
