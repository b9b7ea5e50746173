package requests

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/recording"
)

const esc = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"

// hostileExchange carries terminal escapes in every recorded field.
func hostileExchange() *recording.Exchange {
	return &recording.Exchange{ID: 3, Time: time.Unix(0, 0), Pod: "orders-x2x", Source: "10.0.0.1:1" + esc, Destination: "app", Proto: "HTTP/1.1" + esc,
		Error: "cut" + esc,
		Request: recording.Message{Method: "GET" + esc, Target: "/a" + esc + "\tb", Header: http.Header{"X-A" + esc: {"v" + esc}},
			Body: []byte("text " + esc + "\n"), BodySize: 20, Redacted: []string{"X-B" + esc}},
		Response: &recording.Message{Status: 200, Reason: "OK" + esc, Header: http.Header{"Content-Type": {"application/json"}},
			Body: []byte(`{"a":"` + "\x7f\u009b\u202e" + `"}`), BodySize: 10, Trailer: http.Header{"Grpc-Message": {esc}}}}
}

// assertInert fails when out holds anything a terminal acts on but
// newlines, and tabs.
func assertInert(t *testing.T, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
			t.Fatalf("output holds %U at byte %d:\n%q", r, i, out)
		}
	}
}

func TestShowEscapesControlCharacters(t *testing.T) {
	var out bytes.Buffer
	show(&out, hostileExchange())
	assertInert(t, out.String())
	if !strings.Contains(out.String(), `GET\x1b]0;owned\x07`) {
		t.Errorf("the method is not shown escaped:\n%s", out.String())
	}
}

func TestListEscapesControlCharacters(t *testing.T) {
	var out bytes.Buffer
	if err := writeList(&out, []listed{toListed(hostileExchange())}); err != nil {
		t.Fatal(err)
	}
	assertInert(t, strings.ReplaceAll(out.String(), "\t", ""))
	if strings.Count(out.String(), "\n") != 2 {
		t.Errorf("want a header and one row:\n%s", out.String())
	}
}
