package demoapp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRelay: requests through the relay reach the server, which sees
// the relay's connection, and the relay stops with its context.
func TestRelay(t *testing.T) {
	srv := httptest.NewServer(NewServer("behind").Handler())
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay(ctx, addr, strings.TrimPrefix(srv.URL, "http://")) }()
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/whoami"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Served-By"); got != "behind" {
		t.Errorf("through the relay, served by %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("relay ended with %v", err)
	}
}
