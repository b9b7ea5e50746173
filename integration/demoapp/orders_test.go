package demoapp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOrdersRoutes(t *testing.T) {
	srv := httptest.NewServer(NewServer("test-pod").Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		method, path, body string
		wantStatus         int
		wantBody           string
	}{
		{"GET", "/healthz", "", 200, "ok"},
		{"POST", "/healthz/fail", "", 200, "now fails"},
		{"GET", "/healthz", "", 503, "failing on purpose"},
		{"POST", "/healthz/ok", "", 200, "ok again"},
		{"GET", "/healthz", "", 200, "ok"},
		{"GET", "/whoami", "", 200, `"name": "test-pod"`},
		{"GET", "/from", "", 200, `"from": "`},
		{"GET", "/orders", "", 200, `"item": "grinder"`},
		{"GET", "/orders/7", "", 200, `"id": 7`},
		{"GET", "/orders/9", "", 404, "no order 9"},
		{"GET", "/orders/x", "", 400, "must be a number"},
		{"POST", "/orders", `{"item":"kettle","qty":2}`, 201, `"id": 100`},
		{"POST", "/orders", `{"item":"tea","qty":1}`, 422, "unknown item"},
		{"POST", "/orders", `not json`, 400, "must be an order"},
		{"POST", "/orders/7/checkout", "", 200, `"total": 89`},
		{"POST", "/orders/42/checkout", "", 500, `no discount rule for coupon \"HALFOFF\"`},
		{"POST", "/echo?a=1", "hello", 200, `"body": "hello"`},
		{"GET", "/bytes?n=10", "", 200, ""},
		{"GET", "/bytes?n=-1", "", 400, "non-negative"},
		{"POST", "/upload", "abc", 200, `"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, b)
			}
			if !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("body %s does not contain %s", b, tt.wantBody)
			}
			if got := resp.Header.Get("X-Served-By"); got != "test-pod" {
				t.Errorf("X-Served-By = %q", got)
			}
		})
	}
}

func TestBytesLength(t *testing.T) {
	srv := httptest.NewServer(NewServer("p").Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/bytes?n=200000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if n != 200000 {
		t.Errorf("got %d bytes, want 200000", n)
	}
}

func TestFixedCheckout(t *testing.T) {
	s := NewServer("laptop")
	s.Fixed = true
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/orders/42/checkout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"total": 17.5`) {
		t.Errorf("fixed checkout: %d %s", resp.StatusCode, b)
	}
}
