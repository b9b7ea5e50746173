package requests

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/tetherkube/tether/recording"
)

// TestWriteCurlIsInert: recorded text in the comment line cannot start a
// shell line of its own, and nothing in the output runs a command.
func TestWriteCurlIsInert(t *testing.T) {
	for _, hostile := range []string{"GET\ntouch PWNED #", "GET\rtouch PWNED #", "$(touch PWNED)", "`touch PWNED`"} {
		e := &recording.Exchange{ID: 1, Pod: "orders-x2x", Request: recording.Message{Method: hostile, Target: "/a\n$(touch PWNED)",
			Header: http.Header{"X": {"\ntouch PWNED"}}, Body: []byte("'; touch PWNED; '")}}
		var out bytes.Buffer
		writeCurl(&out, []*recording.Exchange{e}, "http://localhost:1")
		dir := t.TempDir()
		cmd := exec.Command("/bin/sh", "-c", "curl() { :; }\n"+out.String())
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v %s\n%s", err, b, out.String())
		}
		if b, _ := exec.Command("ls", dir).Output(); len(b) > 0 {
			t.Errorf("running the export created %s\n%s", b, out.String())
		}
		first := strings.SplitN(out.String(), "\n", 2)[0]
		if !strings.HasPrefix(first, "# ") || strings.ContainsAny(first, "\r") {
			t.Errorf("comment line %q", first)
		}
	}
}

// TestListedCarriesProtocolAndGRPCStatus: `requests list -o json` says how
// each exchange was spoken and, for gRPC, how the call ended.
func TestListedCarriesProtocolAndGRPCStatus(t *testing.T) {
	e := &recording.Exchange{ID: 3, Pod: "greeter-7d9c-x2x", Proto: "HTTP/2.0",
		Request:  recording.Message{Method: "POST", Target: "/helloworld.Greeter/SayHello"},
		Response: &recording.Message{Status: 200, Trailer: http.Header{"Grpc-Status": {"5"}}}}
	got := toListed(e)
	if got.Proto != "HTTP/2.0" || got.GRPCStatus != "5" {
		t.Errorf("listed proto %q grpc-status %q, want HTTP/2.0 and 5", got.Proto, got.GRPCStatus)
	}
	e.Response.Trailer, e.Response.Header = nil, http.Header{"Grpc-Status": {"12"}}
	if got := toListed(e); got.GRPCStatus != "12" {
		t.Errorf("trailers-only answer: grpc-status %q, want 12", got.GRPCStatus)
	}
}
