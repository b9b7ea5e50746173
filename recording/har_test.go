package recording

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func sample() []*Exchange {
	t0 := time.Date(2026, 11, 23, 5, 0, 0, 123456789, time.UTC)
	return []*Exchange{
		{ID: 1, Time: t0, Pod: "orders-x2x", Source: "10.42.0.9:40000", Destination: ToApp, Proto: "HTTP/1.1",
			Request: Message{Method: "POST", Target: "/orders?coupon=HALF&x=1", Host: "orders",
				Header: http.Header{"Content-Type": {"application/json"}, "Authorization": {Redacted}},
				Body:   []byte(`{"item":"kettle"}`), BodySize: 17, Redacted: []string{"Authorization"}},
			Response: &Message{Status: 201, Reason: "Created", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"id":100}`), BodySize: 10},
			Send:     40 * time.Microsecond, Wait: 900 * time.Microsecond, Receive: 60 * time.Microsecond},
		{ID: 2, Time: t0.Add(time.Second), Pod: "orders-x2x", Destination: ToLaptop, Proto: "HTTP/1.1",
			Request:  Message{Method: "PUT", Target: "/blob", Host: "orders", Header: http.Header{}, Body: []byte{0xff, 0x00, 0x01}, BodySize: 3},
			Response: &Message{Status: 500, Header: http.Header{}, Body: []byte{0xfe}, BodySize: 1}},
		{ID: 3, Time: t0.Add(2 * time.Second), Proto: "HTTP/1.1", Error: "the connection closed before the response",
			Request: Message{Method: "GET", Target: "/slow", Host: "orders", Header: http.Header{}}},
	}
}

func ref(e *Exchange) string { return fmt.Sprintf("x2x.%d", e.ID) }

// TestHARValidatesAndRoundTrips checks tether's HAR against a JSON Schema of
// HAR 1.2, and that reading it back gives the same exchanges.
func TestHARValidatesAndRoundTrips(t *testing.T) {
	h := ToHAR(sample(), ref, "v0.0.0-test")
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	schemaFile, err := os.Open("testdata/har-1.2.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("har.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("har.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err := schema.Validate(inst); err != nil {
		t.Fatalf("tether's HAR does not validate: %v\n%s", err, raw)
	}
	// The schema rejects what the spec forbids: a missing field fails.
	var broken map[string]any
	json.Unmarshal(raw, &broken)
	delete(broken["log"].(map[string]any)["entries"].([]any)[0].(map[string]any)["request"].(map[string]any), "httpVersion")
	if err := schema.Validate(broken); err == nil {
		t.Fatal("the schema accepted an entry without request.httpVersion")
	}

	back, err := ReadHAR(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	for i := range want {
		want[i].Send, want[i].Wait, want[i].Receive = 0, 0, 0 // timings are not read back
		want[i].Error = ""
		if want[i].Response != nil {
			if want[i].Response.Reason == "" {
				want[i].Response.Reason = http.StatusText(want[i].Response.Status)
			}
		}
	}
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("HAR round trip (-want +got)\n%s", diff)
	}
}

func TestReadHARRejectsJunk(t *testing.T) {
	for _, in := range []string{`nope`, `{}`, `{"log":{"entries":[{"request":{"method":"GET","url":"/relative"}}]}}`} {
		if _, err := ReadHAR(strings.NewReader(in)); err == nil {
			t.Errorf("ReadHAR(%s) accepted it", in)
		}
	}
}

// TestHARCarriesHostileBytes: control characters and bytes that are not
// UTF-8 leave HAR as valid, escaped JSON, and bodies come back exactly.
func TestHARCarriesHostileBytes(t *testing.T) {
	hostile := "\x1b]0;x\x07\r\n\u202e\x00"
	e := &Exchange{ID: 1, Proto: "HTTP/1.1",
		Request: Message{Method: "POST", Target: "/a?q=" + url.QueryEscape(hostile), Host: "h", Header: http.Header{"X-A": {hostile}},
			Body: []byte(hostile + "\xff"), BodySize: 9},
		Response: &Message{Status: 200, Header: http.Header{"X-B": {hostile}}, Body: []byte(hostile), BodySize: 8}}
	raw, err := json.Marshal(ToHAR([]*Exchange{e}, ref, "test"))
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(raw) || bytes.ContainsFunc(raw, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		t.Fatalf("HAR holds raw control bytes: %q", raw)
	}
	back, err := ReadHAR(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := back[0]
	if !bytes.Equal(got.Request.Body, e.Request.Body) || !bytes.Equal(got.Response.Body, e.Response.Body) ||
		got.Request.Header.Get("X-A") != hostile || got.Request.Target != e.Request.Target {
		t.Errorf("round trip: %+v", got)
	}
}
