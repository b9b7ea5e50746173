package gatherlogs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		`{"msg":"dial","Authorization":"Bearer abc.def-123"}`:  `{"msg":"dial","Authorization":"Bearer [REDACTED]"}`,
		`curl -H 'authorization: Basic dXNlcjpwYXNz' http://x`: `curl -H 'authorization: Basic [REDACTED]' http://x`,
		`token=s3cr3t&x=1`:                                        `token=[REDACTED]&x=1`,
		`"db_password": "hunter2", "user": "ana"`:                 `"db_password": "[REDACTED]", "user": "ana"`,
		`id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh ok`:     `id [REDACTED] ok`,
		`level=INFO msg="intercepting" pod=orders-1 port=8080`:    `level=INFO msg="intercepting" pod=orders-1 port=8080`,
		`{"level":"WARN","msg":"tunnel: peer dead","silent":1.5}`: `{"level":"WARN","msg":"tunnel: peer dead","silent":1.5}`,
	} {
		if got := string(redactText([]byte(in))); got != want {
			t.Errorf("redactText(%s)\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestRedactValue(t *testing.T) {
	in := `{"data":{"template":"{\"containers\":[{\"env\":[{\"name\":\"DB_PASSWORD\",\"value\":\"hunter2\"},{\"name\":\"MODE\",\"value\":\"prod\"}]}]}","apiToken":"t0k","note":"Bearer abcdefgh"}}`
	var v any
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(redactValue(v))
	out := string(b)
	for _, secret := range []string{"hunter2", "t0k", "abcdefgh"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q left in %s", secret, out)
		}
	}
	if !strings.Contains(out, `prod`) || !strings.Contains(out, `DB_PASSWORD`) {
		t.Errorf("redacted too much: %s", out)
	}
}
