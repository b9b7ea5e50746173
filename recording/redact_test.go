package recording

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRedactor(t *testing.T) {
	ex := func() *Exchange {
		return &Exchange{
			Request: Message{Header: http.Header{"Authorization": {"Bearer x"}, "X-Api-Key": {"k"}, "Content-Type": {"application/json"}},
				Body: []byte(`{"user":{"name":"ann","password":"p"},"items":[{"token":"t"}],"n":1.50}`)},
			Response: &Message{Header: http.Header{"Set-Cookie": {"s=1", "t=2"}, "Content-Type": {"text/plain"}}, Body: []byte(`{"password":"p"}`)},
		}
	}
	e := ex()
	Redactor{Names: []string{"x-api-key", "PASSWORD", "token"}}.Apply(e)
	if got := e.Request.Header.Get("Authorization"); got != Redacted {
		t.Errorf("Authorization = %q", got)
	}
	if got := e.Request.Header.Get("X-Api-Key"); got != Redacted {
		t.Errorf("X-Api-Key = %q", got)
	}
	if diff := cmp.Diff([]string{Redacted, Redacted}, e.Response.Header.Values("Set-Cookie")); diff != "" {
		t.Errorf("Set-Cookie (-want +got)\n%s", diff)
	}
	if got, want := string(e.Request.Body), `{"user":{"name":"ann","password":"[REDACTED]"},"items":[{"token":"[REDACTED]"}],"n":1.50}`; got != want {
		t.Errorf("JSON body = %s, want %s", got, want)
	}
	if diff := cmp.Diff([]string{"Authorization", "X-Api-Key", "items[0].token", "user.password"}, e.Request.Redacted); diff != "" {
		t.Errorf("Redacted (-want +got)\n%s", diff)
	}
	if string(e.Response.Body) != `{"password":"[REDACTED]"}` {
		t.Errorf("JSON is redacted whatever the Content-Type says: %s", e.Response.Body)
	}

	e = ex()
	Redactor{Off: true, Names: []string{"password"}}.Apply(e)
	if e.Request.Header.Get("Authorization") != "Bearer x" || len(e.Request.Redacted) != 0 {
		t.Errorf("Off must record as seen: %+v", e.Request)
	}
}

// TestRedactorFindsSecretsByName: the default rule and --redact names
// apply wherever a name appears: headers, the query, form and JSON bodies
// (truncated ones too), URLs in Location and Referer.
func TestRedactorFindsSecretsByName(t *testing.T) {
	const secret = "s3cr3t"
	tests := []struct {
		name     string
		names    []string
		msg      Message
		redacted []string
		keep     []string // what must survive
	}{
		{name: "token headers by default",
			msg: Message{Header: http.Header{"X-Auth-Token": {secret}, "X-Session-Id": {secret}, "X-Client-Secret": {secret}, "Api-Key": {secret},
				"X-Apikey": {secret}, "X-Password": {secret}, "Proxy-Authorization": {secret}, "X-Request-Id": {"r1"}}},
			redacted: []string{"Api-Key", "Proxy-Authorization", "X-Apikey", "X-Auth-Token", "X-Client-Secret", "X-Password", "X-Session-Id"}, keep: []string{"r1"}},
		{name: "query by default and by --redact",
			names:    []string{"sig"},
			msg:      Message{Method: "GET", Target: "/a?token=" + secret + "&api_key=" + secret + "&page=2&Sig=" + secret + "&access_token=" + secret, Header: http.Header{}},
			redacted: []string{"query:Sig", "query:access_token", "query:api_key", "query:token"}, keep: []string{"/a?", "page=2"}},
		{name: "form body, truncated",
			names: []string{"pin"},
			msg: Message{Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Truncated: true,
				Body: []byte("user=ann&password=" + secret + "&pin=" + secret + "&client_secret=" + secret[:3])},
			redacted: []string{"form:client_secret", "form:password", "form:pin"}, keep: []string{"user=ann"}},
		{name: "JSON truncated mid-value",
			names: []string{"ssn"},
			msg: Message{Header: http.Header{"Content-Type": {"application/json"}}, Truncated: true,
				Body: []byte(`{"a":{"ssn":"` + secret + `","list":[1,{"refresh_token":"` + secret + `"}],"password":"` + secret[:4])},
			redacted: []string{"a.list[1].refresh_token", "a.password", "a.ssn"}, keep: []string{`"list":[1,{`}},
		{name: "JSON without a JSON content type, non-string by --redact, numbers kept by default",
			names: []string{"card"},
			msg: Message{Header: http.Header{"Content-Type": {"text/plain"}},
				Body: []byte(`[{"card":{"n":"` + secret + `"},"max_tokens":100,"apiKey":"` + secret + `","note":"token=` + "x" + `"}]`)},
			redacted: []string{"[0].apiKey", "[0].card"}, keep: []string{`"max_tokens":100`, `"note":"token=x"`}},
		{name: "multipart field names, truncated",
			names: []string{"pin"},
			msg: Message{Header: http.Header{"Content-Type": {`multipart/form-data; boundary="b-1"`}}, Truncated: true,
				Body: []byte("--b-1\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nann\r\n--b-1\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" +
					secret + "\r\n--b-1\r\nContent-Disposition: form-data; name=pin\r\n\r\n" + secret[:4])},
			redacted: []string{"multipart:password", "multipart:pin"}, keep: []string{"ann\r\n--b-1", `name="password"`}},
		{name: "URLs in Location and Referer",
			msg:      Message{Header: http.Header{"Location": {"https://x/cb?code=1&token=" + secret}, "Referer": {"/p?session=" + secret}}},
			redacted: []string{"Location:token", "Referer:session"}, keep: []string{"code=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			Redactor{Names: tt.names}.Message(&m)
			all := m.Method + " " + m.Target + "\n" + string(m.Body)
			for k, vs := range m.Header {
				all += "\n" + k + ": " + strings.Join(vs, ",")
			}
			if strings.Contains(all, secret[:3]) {
				t.Errorf("a secret is left:\n%s", all)
			}
			for _, k := range tt.keep {
				if !strings.Contains(all, k) {
					t.Errorf("%q was lost:\n%s", k, all)
				}
			}
			if diff := cmp.Diff(tt.redacted, m.Redacted); diff != "" {
				t.Errorf("Redacted (-want +got)\n%s", diff)
			}
		})
	}
}

func TestSecretName(t *testing.T) {
	r := Redactor{Names: []string{"pin"}}
	for name, want := range map[string]bool{
		"Authorization": true, "cookie": true, "Set-Cookie": true, "X-Auth-Token": true, "x_api_key": true, "apiKey": true,
		"client_secret": true, "PASSWD": true, "sessionid": true, "X-CSRF-Token": true, "pin": true, "Pin": true, "private_key": true,
		"X-Amz-Signature": true, "credentials": true,
		"Content-Type": false, "X-Request-Id": false, "page": false, "pinned": false, "author": false, "keyboard": false,
	} {
		if got := r.Secret(name); got != want {
			t.Errorf("Secret(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzRedactJSON: any body is scanned without panicking; valid JSON stays
// valid JSON, without the values of the named fields.
func FuzzRedactJSON(f *testing.F) {
	for _, s := range []string{`{"a":{"password":"p","b":[1,{"token":{"x":"}"}}]}}`, `[{"pin":1}]`, `{"pin":"a\"b"`, `{"x":`, `"\`, `]]}}{`} {
		f.Add([]byte(s))
	}
	r := Redactor{Names: []string{"pin"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _ := r.json(body)
		if !json.Valid(body) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s redacted to invalid JSON %s", body, out)
		}
		var v any
		json.Unmarshal(out, &v)
		var walk func(any)
		walk = func(v any) {
			switch t2 := v.(type) {
			case map[string]any:
				for k, c := range t2 {
					if strings.EqualFold(k, "pin") && c != Redacted {
						t.Fatalf("%s: pin left as %v in %s", body, c, out)
					}
					walk(c)
				}
			case []any:
				for _, c := range t2 {
					walk(c)
				}
			}
		}
		walk(v)
	})
}

// TestRedactJSONDeepNesting: a body of nothing but brackets costs the
// scanner no more than a bounded stack, and what nests too deep to follow
// is redacted rather than let through.
func TestRedactJSONDeepNesting(t *testing.T) {
	body := []byte(strings.Repeat(`[{"a":`, 1<<17) + `{"password":"s3cr3t"}`)
	allocs := testing.AllocsPerRun(1, func() { Redactor{}.json(body) })
	if allocs > 10_000 {
		t.Errorf("%.0f allocations for %d bytes of nesting", allocs, len(body))
	}
	out, paths := Redactor{}.json(body)
	if strings.Contains(string(out), "s3cr3t") || len(paths) != 1 {
		t.Errorf("%d paths, secret left: %v", len(paths), strings.Contains(string(out), "s3cr3t"))
	}
}

// FuzzSecretNameFastPath: the ASCII fast path says what the general one
// says, for any name.
func FuzzSecretNameFastPath(f *testing.F) {
	for _, s := range []string{"Authorization", "X-Auth-Token", "x_api_key", "Content-Type", "author", "a--jwt__b", "ÄPIKEY", "pwd", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := secretName(name), secretNameSlow(name); got != want {
			t.Errorf("secretName(%q) = %v, the general path says %v", name, got, want)
		}
	})
}

// TestPlainHeadersAreNotSecret: the names secretName answers by lookup
// are those its rules find no secret in.
func TestPlainHeadersAreNotSecret(t *testing.T) {
	if len(plainHeaders) < 50 {
		t.Fatalf("%d plain header names", len(plainHeaders))
	}
	for name := range plainHeaders {
		if secretNameSlow(name) || name != http.CanonicalHeaderKey(name) {
			t.Errorf("%q is among the plain header names: secret by the rules, or not canonical", name)
		}
	}
}

// TestSecretPartsAreLetters: secretPartLetters holds a part's letters as
// bits a..z; a part with anything else would need another filter.
func TestSecretPartsAreLetters(t *testing.T) {
	for _, p := range secretParts {
		if strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Errorf("secret part %q has more than the letters a-z", p)
		}
	}
}

var headerNames = []string{"Host", "User-Agent", "Accept", "Content-Type", "Content-Length", "X-Request-Id", "Traceparent", "Accept-Encoding", "Date", "X-Served-By"}

func BenchmarkSecretName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range headerNames {
			secretName(n)
		}
	}
}

// BenchmarkSecretNameFields: names of JSON fields and query parameters.
func BenchmarkSecretNameFields(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range []string{"id", "item", "qty", "total", "customer_name", "created_at", "page", "X-Served-By"} {
			secretName(n)
		}
	}
}

func BenchmarkSecretNameSlow(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range headerNames {
			secretNameSlow(n)
		}
	}
}

// TestMediaTypeAsParseMediaType: the fast path for a type without
// parameters gives what mime.ParseMediaType gives.
func TestMediaTypeAsParseMediaType(t *testing.T) {
	for _, v := range []string{"application/json", " Application/JSON ", "text/plain", "application/problem+json",
		"multipart/form-data; boundary=x", "application/json; charset=utf-8", "", "application/x-www-form-urlencoded"} {
		want, _, _ := mime.ParseMediaType(v)
		if got := mediaType(http.Header{"Content-Type": {v}}); got != want {
			t.Errorf("%q: %q, want %q", v, got, want)
		}
	}
}

func TestPlainKeyAsUnmarshal(t *testing.T) {
	for _, q := range []string{`"token"`, `"a b"`, `""`, `"x\"y"`, `"\u0074oken"`, "\"caf\xc3\xa9\"", "\"\xff\"", `"tab	"`} {
		k, ok := plainKey([]byte(q))
		var want string
		err := json.Unmarshal([]byte(q), &want)
		if ok && (err != nil || k != want) {
			t.Errorf("%q: plain %q, Unmarshal %q (%v)", q, k, want, err)
		}
	}
	if _, ok := plainKey([]byte(`"session_id"`)); !ok {
		t.Error("a plain key not taken as plain")
	}
}
