package recording

import (
	"net/http"
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
	if got, want := string(e.Request.Body), `{"items":[{"token":"[REDACTED]"}],"n":1.50,"user":{"name":"ann","password":"[REDACTED]"}}`; got != want {
		t.Errorf("JSON body = %s, want %s", got, want)
	}
	if diff := cmp.Diff([]string{"Authorization", "X-Api-Key", "items[0].token", "user.password"}, e.Request.Redacted); diff != "" {
		t.Errorf("Redacted (-want +got)\n%s", diff)
	}
	if string(e.Response.Body) != `{"password":"p"}` {
		t.Errorf("a text/plain body must stay as it is: %s", e.Response.Body)
	}

	e = ex()
	Redactor{Off: true, Names: []string{"password"}}.Apply(e)
	if e.Request.Header.Get("Authorization") != "Bearer x" || len(e.Request.Redacted) != 0 {
		t.Errorf("Off must record as seen: %+v", e.Request)
	}
}
