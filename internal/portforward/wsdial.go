package portforward

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	pfconstants "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/websocket"
)

// wsDialer opens a port-forward as SPDY tunnelled through a WebSocket (the
// API server's port-forward over WebSocket, Kubernetes 1.30+), the way
// client-go's SPDY-over-WebSocket dialer does, except that the connection
// under SPDY is a frameConn: one WebSocket message per SPDY frame.
type wsDialer struct {
	url *url.URL
	rc  *rest.Config
}

func newWSDialer(u *url.URL, rc *rest.Config) (*wsDialer, error) {
	// Fail early on a config the WebSocket transport cannot use; Dial
	// builds a fresh one each time (its round tripper holds one connection).
	if _, _, err := websocket.RoundTripperFor(rc); err != nil {
		return nil, err
	}
	return &wsDialer{url: u, rc: rc}, nil
}

// Dial upgrades to a WebSocket whose subprotocol names the SPDY
// port-forward protocol wanted, and runs a SPDY client connection over it.
// A server that cannot upgrade fails with an httpstream upgrade failure
// (see withSPDYFallback).
func (d *wsDialer) Dial(protocols ...string) (httpstream.Connection, string, error) {
	rt, holder, err := websocket.RoundTripperFor(d.rc)
	if err != nil {
		return nil, "", err
	}
	// WebSocket upgrades are GETs (RFC 6455 4.1).
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, d.url.String(), nil)
	if err != nil {
		return nil, "", err
	}
	tunnelled := make([]string, len(protocols))
	for i, p := range protocols {
		tunnelled[i] = pfconstants.WebsocketsSPDYTunnelingPrefix + p
	}
	ws, err := websocket.Negotiate(rt, holder, req, tunnelled...)
	if err != nil {
		return nil, "", err
	}
	if ws == nil {
		return nil, "", fmt.Errorf("port-forward: the WebSocket upgrade returned no connection")
	}
	protocol := strings.TrimPrefix(ws.Subprotocol(), pfconstants.WebsocketsSPDYTunnelingPrefix)
	conn, err := httpstreamspdy.NewClientConnectionWithPings(newFrameConn(ws), portforward.PingPeriod)
	if err != nil {
		ws.Close()
		return nil, "", err
	}
	return conn, protocol, nil
}
