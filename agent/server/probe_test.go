package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/tetherkube/tether/agent"
)

// dnsServer answers on loopback UDP and TCP (same port): names in zone get
// their A record, others NXDOMAIN; truncate makes every UDP answer
// truncated, so the client must retry over TCP.
func dnsServer(t testing.TB, zone map[string]string, truncate bool) string {
	t.Helper()
	// A free UDP port's TCP twin may be taken (other processes listen on
	// this machine): try other ports.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for attempt := 0; attempt < 20; attempt++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	answer := func(q []byte, udp bool) []byte {
		var m dnsmessage.Message
		if err := m.Unpack(q); err != nil {
			return nil
		}
		m.Response = true
		name := m.Questions[0].Name.String()
		if ip, ok := zone[name]; ok {
			a := dnsmessage.AResource{}
			copy(a.A[:], net.ParseIP(ip).To4())
			m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5}, Body: &a}}
		} else {
			m.RCode = dnsmessage.RCodeNameError
		}
		if udp && truncate {
			m.Truncated, m.Answers = true, nil
		}
		b, _ := m.Pack()
		return b
	}
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			// A stray datagram with another id first: the client must skip it.
			stray := append([]byte(nil), buf[:n]...)
			binary.BigEndian.PutUint16(stray, binary.BigEndian.Uint16(stray)+1)
			pc.WriteTo(answer(stray, true), from)
			pc.WriteTo(answer(buf[:n], true), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				a := answer(q, false)
				c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
			}()
		}
	}()
	return pc.LocalAddr().String()
}

func TestQueryDNS(t *testing.T) {
	zone := map[string]string{"orders.demo.svc.cluster.local.": "10.43.0.7"}
	for _, truncate := range []bool{false, true} {
		server := dnsServer(t, zone, truncate)
		tests := []struct {
			name      string
			wantRcode string
			wantData  []string
		}{
			{"orders.demo.svc.cluster.local.", "NOERROR", []string{"10.43.0.7"}},
			{"nope.demo.svc.cluster.local.", "NXDOMAIN", nil},
		}
		for _, tt := range tests {
			a, err := queryDNS(context.Background(), agent.DNSQuery{Server: server, Name: tt.name, Type: "A", Timeout: 2 * time.Second})
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			var data []string
			for _, r := range a.Answers {
				data = append(data, r.Data)
			}
			if a.Rcode != tt.wantRcode || !cmp.Equal(data, tt.wantData) || a.TCP != truncate {
				t.Errorf("truncate=%v %s: got rcode %q answers %v tcp %v, want %q %v", truncate, tt.name, a.Rcode, data, a.TCP, tt.wantRcode, tt.wantData)
			}
		}
	}
}

func TestQueryDNSTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	a, err := queryDNS(context.Background(), agent.DNSQuery{Server: pc.LocalAddr().String(), Name: "x.", Type: "A", Timeout: 200 * time.Millisecond})
	if err != nil || a.Error != "timeout" || a.Rcode != "" {
		t.Fatalf("got %+v, %v; want a timeout", a, err)
	}
}

func TestQueryDNSBadRequest(t *testing.T) {
	for _, q := range []agent.DNSQuery{
		{Server: "127.0.0.1:53", Name: "x.", Type: "BOGUS"},
		{Server: "127.0.0.1:53", Name: "not-qualified", Type: "A"},
		{Server: "127.0.0.1", Name: "x.", Type: "A"},
	} {
		if _, err := queryDNS(context.Background(), q); !errors.Is(err, agent.ErrBadProbe) {
			t.Errorf("%+v: got %v, want agent.ErrBadProbe", q, err)
		}
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Host != "orders" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	r, err := probe(context.Background(), agent.ProbeRequest{Address: addr, HTTP: &agent.HTTPProbe{Path: "/healthz", Host: "orders"}})
	if err != nil || !r.Connected || r.HTTPStatus != http.StatusTeapot || r.HTTPError != "" {
		t.Fatalf("http probe: got %+v, %v", r, err)
	}

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	r, err = probe(context.Background(), agent.ProbeRequest{Address: closedAddr})
	if err != nil || r.Connected || r.Error != "refused" {
		t.Fatalf("probe of a closed port: got %+v, %v; want refused", r, err)
	}

	// A server that accepts and never answers: the HTTP part times out.
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	r, err = probe(context.Background(), agent.ProbeRequest{Address: silent.Addr().String(), Timeout: 300 * time.Millisecond, HTTP: &agent.HTTPProbe{}})
	if err != nil || !r.Connected || r.HTTPError != "timeout" {
		t.Fatalf("probe of a silent server: got %+v, %v; want connected, http timeout", r, err)
	}

	if _, err := probe(context.Background(), agent.ProbeRequest{Address: "no-port"}); !errors.Is(err, agent.ErrBadProbe) {
		t.Fatalf("bad address: got %v, want agent.ErrBadProbe", err)
	}
}

// TestProbesThroughTunnel runs each probe RPC through the tunnel and the
// gRPC adapter, both ways of the error mapping included.
func TestProbesThroughTunnel(t *testing.T) {
	h := newHarness(t)
	_, client, err := h.daemon(testToken, named(t, "unused"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	server := dnsServer(t, map[string]string{"a.example.": "192.0.2.1"}, false)
	a, err := client.QueryDNS(ctx, agent.DNSQuery{Server: server, Name: "a.example.", Type: "A"})
	if err != nil || a.Rcode != "NOERROR" || len(a.Answers) != 1 || a.Answers[0].Data != "192.0.2.1" || a.Latency <= 0 {
		t.Errorf("QueryDNS: got %+v, %v", a, err)
	}
	if _, err := client.QueryDNS(ctx, agent.DNSQuery{Server: server, Name: "a.example.", Type: "BOGUS"}); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("QueryDNS with a bad type: got %v, want agent.ErrBadProbe", err)
	}
	r, err := client.Probe(ctx, agent.ProbeRequest{Address: fmt.Sprintf("127.0.0.1:%d", h.frontPort), HTTP: &agent.HTTPProbe{Path: "/"}})
	if err != nil || !r.Connected || r.HTTPStatus != http.StatusOK || r.LocalAddress == "" {
		t.Errorf("Probe: got %+v, %v", r, err)
	}
	if _, err := client.Probe(ctx, agent.ProbeRequest{Address: "nonsense"}); !errors.Is(err, agent.ErrBadProbe) {
		t.Errorf("Probe of a bad address: got %v, want agent.ErrBadProbe", err)
	}
	if _, err := client.ResolvConf(ctx); err != nil && !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ResolvConf: %v", err)
	}
}
