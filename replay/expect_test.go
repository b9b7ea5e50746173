package replay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExpect(t *testing.T) {
	body := []byte(`{"error":"pricing: no discount rule","total":44.5,"items":[{"sku":"A1"}],"ok":false}`)
	failing := Answer{Status: 500, Latency: 700 * time.Millisecond, Body: body}
	fine := Answer{Status: 200, Latency: 20 * time.Millisecond, Body: []byte(`{"total":44.5}`)}
	grpcFailing := Answer{Status: 200, GRPCStatus: "13", Latency: time.Millisecond}
	broken := Answer{Error: "connection reset by peer", Latency: 2 * time.Second}
	for _, tc := range []struct {
		expect                        string
		failing, fine, grpc, noAnswer bool
	}{
		{"status=500", true, false, false, false},
		{"status=5xx", true, false, false, false},
		{"status!=200", true, false, false, false},
		{" status=2XX ", false, true, true, false},
		{"grpc-status=13", false, false, true, false},
		{"grpc-status!=0", false, false, true, false},
		{"latency>500ms", true, false, false, false},
		{"latency>=700ms", true, false, false, false},
		{"latency<50ms", false, true, true, false},
		{"latency<=20ms", false, true, true, false},
		{"json:$.error", true, false, false, false},
		{"json:$.total=44.5", true, true, false, false},
		{"json:$.total!=44.5", false, false, false, false},
		{`json:$.items[0].sku="A1"`, true, false, false, false},
		{"json:$.items[0].sku=A1", true, false, false, false},
		{"json:$.items[1].sku", false, false, false, false},
		{"json:$.ok=false", true, false, false, false},
		{"body~no discount rule", true, false, false, false},
		{"error", false, false, false, true},
	} {
		e, err := ParseExpect(tc.expect)
		if err != nil {
			t.Errorf("%q: %v", tc.expect, err)
			continue
		}
		for _, c := range []struct {
			name string
			a    Answer
			want bool
		}{{"failing", failing, tc.failing}, {"fine", fine, tc.fine}, {"grpc", grpcFailing, tc.grpc}, {"no answer", broken, tc.noAnswer}} {
			if got := e.Holds(c.a); got != c.want {
				t.Errorf("%q on the %s answer: %v, want %v", tc.expect, c.name, got, c.want)
			}
		}
	}
}

func TestExpectBadInput(t *testing.T) {
	for expect, says := range map[string]string{
		"status=teapot":  "write status=500, status=5xx or status!=200",
		"status>500":     "write status=500, status=5xx or status!=200",
		"status=600":     "write status=500, status=5xx or status!=200",
		"grpc-status=99": "a gRPC code, 0 to 16",
		"latency>soon":   "write latency>500ms",
		"latency=5ms":    "write latency>500ms",
		"json:error":     "a JSON path starts with $",
		"json:$.a[x]":    "write an index as [0]",
		"json:$..a":      "an empty field name",
		"body~(":         "the regular expression",
		"slow":           "expect status=..., grpc-status=..., latency>..., json:$.PATH[=VALUE], body~REGEX or error",
		"":               "expect status=...",
	} {
		_, err := ParseExpect(expect)
		if !errors.Is(err, ErrBadExpect) || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v, want ErrBadExpect saying %q", expect, err, says)
		}
	}
}
