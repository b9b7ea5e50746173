package httprec

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTapRecordsAnUpstream: a connection the agent speaks HTTP over itself
// (HTTP/1.1 and HTTP/2 cleartext) is recorded as the caller's would be.
func TestTapRecordsAnUpstream(t *testing.T) {
	srv := httptest.NewUnstartedServer(echoHandler())
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protos
	srv.Start()
	defer srv.Close()
	for _, h2 := range []bool{false, true} {
		ring := NewRing(64 << 20)
		var p http.Protocols
		if h2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return Tap(c, ring.NewConn(Meta{Pod: "p", Port: 80, Source: "10.0.0.9:1234", Destination: "laptop"}, DefaultOptions())), nil
		}}
		resp, err := (&http.Client{Transport: tr}).Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"item":"kettle"}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		got := waitExchanges(t, ring, 1)
		e := got[0]
		if e.Request.Method != "POST" || e.Request.Target != "/orders" || e.Status() != 200 ||
			string(e.Request.Body) != `{"item":"kettle"}` || e.Source != "10.0.0.9:1234" || e.Destination != "laptop" {
			t.Errorf("h2=%v: recorded %+v", h2, e)
		}
	}
}
