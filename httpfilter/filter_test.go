package httpfilter

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "x-tether-user=ana", want: "X-Tether-User=ana"},
		{in: "X-Env=", want: "X-Env="},
		{in: "baggage=~.*user=ana.*", want: "Baggage=~.*user=ana.*"},
		{in: "x-user", err: "want NAME=VALUE or NAME=~REGEX"},
		{in: "=ana", err: "want NAME=VALUE"},
		{in: "x user=ana", err: "not a valid header name"},
		{in: "x-user=a\nb", err: "characters a header cannot carry"},
		{in: "x-user=~(", err: "missing closing )"},
		{in: "x-user=~", err: "empty regular expression"},
	}
	for _, tt := range tests {
		h, err := ParseHeader(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: got %v, want an error with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := (Filter{Headers: []HeaderMatch{h}}).String(); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func header(t testing.TB, s string) HeaderMatch {
	t.Helper()
	h, err := ParseHeader(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParseSpec(t *testing.T) {
	f, err := Parse(Spec{Headers: []string{"x-user=ana", "x-env=~dev|stag"}, PathPrefix: "/api/", PathRegex: "/api/v[0-9]+/.*"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.String(), "X-User=ana X-Env=~dev|stag path /api/* path =~/api/v[0-9]+/.*"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []Spec{{PathPrefix: "api"}, {PathRegex: "("}, {Headers: []string{"nope"}}} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	re, err := ParsePathRegex("/orders/[0-9]+")
	if err != nil {
		t.Fatal(err)
	}
	f := Filter{Headers: []HeaderMatch{header(t, "x-user=ana"), header(t, "x-env=~dev|stag")}, PathPrefix: "/orders/", PathRegex: re}
	tests := []struct {
		path string
		hdr  http.Header
		want bool
	}{
		{"/orders/12", http.Header{"X-User": {"ana"}, "X-Env": {"dev"}}, true},
		{"/orders/12", http.Header{"X-User": {"bob", "ana"}, "X-Env": {"stag"}}, true}, // any value of a repeated header
		{"/orders/12", http.Header{"X-User": {"ana"}, "X-Env": {"devx"}}, false},       // the regex is anchored
		{"/orders/12", http.Header{"X-User": {"Ana"}, "X-Env": {"dev"}}, false},        // values are case-sensitive
		{"/orders/x", http.Header{"X-User": {"ana"}, "X-Env": {"dev"}}, false},
		{"/order/12", http.Header{"X-User": {"ana"}, "X-Env": {"dev"}}, false},
		{"/orders/12", http.Header{"X-Env": {"dev"}}, false},
	}
	for _, tt := range tests {
		r := &http.Request{URL: &url.URL{Path: tt.path}, Header: tt.hdr}
		if got := f.Match(r); got != tt.want {
			t.Errorf("%s %v: got %v, want %v", tt.path, tt.hdr, got, tt.want)
		}
	}
	host := Filter{Headers: []HeaderMatch{header(t, "host=orders.shop")}}
	if !host.Match(&http.Request{URL: &url.URL{Path: "/"}, Host: "orders.shop", Header: http.Header{}}) {
		t.Error("Host (HTTP/2's :authority) is matched from the request's Host")
	}
	if !(Filter{}).Match(&http.Request{URL: &url.URL{Path: "/"}}) {
		t.Error("the zero filter matches everything")
	}
}

func TestOverlaps(t *testing.T) {
	ana, bob := header(t, "x-user=ana"), header(t, "x-user=bob")
	anyUser := header(t, "x-user=~.*")
	env := header(t, "x-env=dev")
	tests := []struct {
		name string
		a, b Filter
		want bool
	}{
		{"two users", Filter{Headers: []HeaderMatch{ana}}, Filter{Headers: []HeaderMatch{bob}}, false},
		{"the same user", Filter{Headers: []HeaderMatch{ana}}, Filter{Headers: []HeaderMatch{ana}}, true},
		{"user and another header", Filter{Headers: []HeaderMatch{ana}}, Filter{Headers: []HeaderMatch{env}}, true},
		{"a regex cannot be told apart", Filter{Headers: []HeaderMatch{ana}}, Filter{Headers: []HeaderMatch{anyUser}}, true},
		{"all traffic overlaps everything", Filter{}, Filter{Headers: []HeaderMatch{ana}}, true},
		{"disjoint paths", Filter{PathPrefix: "/a/"}, Filter{PathPrefix: "/b/"}, false},
		{"nested paths", Filter{PathPrefix: "/a/"}, Filter{PathPrefix: "/a/b"}, true},
		{"path vs header", Filter{PathPrefix: "/a/"}, Filter{Headers: []HeaderMatch{ana}}, true},
		{"same path, two users", Filter{PathPrefix: "/a/", Headers: []HeaderMatch{ana}}, Filter{PathPrefix: "/a/", Headers: []HeaderMatch{bob}}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Overlaps(tt.b); got != tt.want {
			t.Errorf("%s: %v overlaps %v = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Overlaps(tt.a); got != tt.want {
			t.Errorf("%s (reversed): got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBaggageExample: the baggage filter docs/intercept.md gives selects
// the user's entry wherever it stands in the list, and no longer name.
func TestBaggageExample(t *testing.T) {
	f, err := Parse(Spec{Headers: []string{"baggage=~(.*[ ,])?tether-user=ana([,;].*)?"}})
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]bool{
		"tether-user=ana":                 true,
		"a=1, tether-user=ana":            true,
		"a=1,tether-user=ana;prop=x,b=2":  true,
		"tether-user=anastasia":           false,
		"not-tether-user=ana":             false,
		"a=1, tether-user=bob, other=ana": false,
	} {
		r := &http.Request{URL: &url.URL{Path: "/"}, Header: http.Header{"Baggage": {v}}}
		if got := f.Match(r); got != want {
			t.Errorf("baggage %q: %v, want %v", v, got, want)
		}
	}
}
