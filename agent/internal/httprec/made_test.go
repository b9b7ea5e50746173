package httprec

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tetherkube/tether/recording"
)

// TestMadeRecordsWhatTapWould: an exchange the agent makes itself (a
// request written with Request.Write, its answer read with ReadResponse),
// recorded by Made from those parsed values, is the exchange Tap records
// from the same connection's bytes: heads, bodies within the cap,
// trailers, redaction; only the timings differ.
func TestMadeRecordsWhatTapWould(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			w.Header().Set("X-Sum", "11")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/untilclose", "/hangup":
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			if r.URL.Path == "/untilclose" {
				brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
				brw.Flush()
			}
			c.Close()
		default:
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cret"})
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"got":%q,"session":"abc"}`, body)
		}
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name, method, target, body string
		header                     http.Header
	}{
		{"get with a query and secrets", "GET", "/orders/7?token=abc&x=1", "",
			http.Header{"Authorization": {"Bearer t"}, "Accept": {"*/*"}, "User-Agent": {""}}},
		{"post json", "POST", "/orders", `{"item":"kettle","password":"p"}`,
			http.Header{"User-Agent": {"curl/8.5"}, "X-User": {"ana"}, "Content-Type": {"application/json"}}},
		{"put without a body", "PUT", "/orders/7", "", http.Header{"User-Agent": {""}}},
		{"chunked answer with a trailer", "GET", "/chunked", "", http.Header{"User-Agent": {""}}},
		{"connection close", "GET", "/close", "", http.Header{"User-Agent": {""}}},
		{"no content", "DELETE", "/nocontent", "", http.Header{"User-Agent": {""}}},
		{"head", "HEAD", "/json", "", http.Header{"User-Agent": {""}}},
		{"bodies over the cap", "POST", "/big", long, http.Header{"User-Agent": {""}}},
		{"body until the connection ends", "GET", "/untilclose", "", http.Header{"User-Agent": {""}}},
		{"no answer", "GET", "/hangup", "", http.Header{"User-Agent": {""}}},
		{"go's user agent", "GET", "/json", "", http.Header{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.BodyCap = 64
			meta := Meta{Pod: "orders-1", Port: 8080, Source: "mirror", Destination: recording.ToMirror}
			tapped, made := NewRing(64<<20), NewRing(64<<20)
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			c = Tap(c, tapped.NewConn(meta, opts))
			rec := made.NewMade(meta, opts)
			u, _ := url.Parse("http://" + host + tc.target)
			req := &http.Request{Method: tc.method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: tc.header, Host: host, ContentLength: int64(len(tc.body))}
			if tc.body != "" {
				req.Body = io.NopCloser(strings.NewReader(tc.body))
			}
			sent := time.Now()
			bw := bufio.NewWriter(c)
			if err := req.Write(bw); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			head := time.Now()
			if err == nil {
				_, err = io.Copy(rec.AnswerBody(resp), resp.Body)
				resp.Body.Close()
			}
			if err != nil {
				resp = nil
			}
			rec.Record(req, []byte(tc.body), sent, head, time.Now(), resp, err)
			c.Close()
			want, got := waitExchanges(t, tapped, 1)[0], waitExchanges(t, made, 1)[0]
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(recording.Exchange{}, "ID", "Time", "Send", "Wait", "Receive", "Error"),
				cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Made's exchange differs from Tap's (-tap +made):\n%s", diff)
			}
			if (want.Error == "") != (got.Error == "") || !strings.HasPrefix(got.Error, want.Error) {
				t.Errorf("error %q, Tap's %q", got.Error, want.Error)
			}
		})
	}
}

// TestMadeStaysWithinItsShare: an exchange its connection's share cannot
// hold is not recorded, counted, and nothing stays charged.
func TestMadeStaysWithinItsShare(t *testing.T) {
	ring := NewRing(64 << 20)
	opts := DefaultOptions()
	opts.ConnShare = 4 << 10
	rec := ring.NewMade(Meta{Source: "mirror", Destination: recording.ToMirror}, opts)
	u, _ := url.Parse("http://laptop/orders")
	big := bytes.Repeat([]byte("x"), 8<<10)
	req := &http.Request{Method: "POST", URL: u, Host: "laptop", Header: http.Header{}, ContentLength: int64(len(big))}
	resp := &http.Response{Status: "200 OK", StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, ContentLength: 2}
	rec.AnswerBody(&http.Response{ContentLength: 2}).Write([]byte("ok"))
	now := time.Now()
	rec.Record(req, big, now, now, now, resp, nil)
	st := ring.Stats()
	if st.Exchanges != 0 || st.Limited != 1 || st.InflightBytes != 0 || rec.mem.used != 0 {
		t.Errorf("over its share: %+v, %d bytes still charged", st, rec.mem.used)
	}
	rec.Record(req, big[:10], now, now, now, resp, nil)
	if got := waitExchanges(t, ring, 1)[0]; string(got.Request.Body) != "xxxxxxxxxx" || got.Response.Status != 200 {
		t.Errorf("within its share: %+v", got)
	}
	if st := ring.Stats(); st.InflightBytes != 0 || rec.mem.used != 0 {
		t.Errorf("after recording: %+v, %d bytes still charged", st, rec.mem.used)
	}
}

// TestBodyOfKnownLengthTakesItsLength: a body whose length its head gave
// is kept in a buffer of that size, not of the 512 bytes a body of
// unknown length starts with; one longer than said still grows.
func TestBodyOfKnownLengthTakesItsLength(t *testing.T) {
	ring := NewRing(64 << 20)
	mem := meter{ring: ring, share: 1 << 20}
	for _, tc := range []struct {
		expect    int64
		writes    []string
		wantCap   int
		wantBytes string
	}{
		{39, []string{strings.Repeat("x", 39)}, 39, strings.Repeat("x", 39)},
		{10, []string{"01234", "56789"}, 10, "0123456789"},
		{0, []string{"abc"}, 512, "abc"},
		{4, []string{"abcdef"}, 512, "abcdef"},
	} {
		b := newBody(&mem, 1<<20)
		b.expectLen(tc.expect)
		for _, w := range tc.writes {
			b.write([]byte(w))
		}
		if cap(b.data) != tc.wantCap || string(b.data) != tc.wantBytes {
			t.Errorf("expecting %d, wrote %q: kept %q in %d bytes, want %d", tc.expect, tc.writes, b.data, cap(b.data), tc.wantCap)
		}
		b.release()
	}
}
