package replay

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tetherkube/tether/recording"
)

// TestDiffRedactsLiveSecrets: what --diff prints of the live answer is
// redacted by the same rules as the recording.
func TestDiffRedactsLiveSecrets(t *testing.T) {
	const live = "LIVE-SECRET"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Auth-Token", live)
		w.Header().Set("Set-Cookie", "sid="+live)
		w.Header().Set("Location", "/next?code=2&token="+live)
		w.Header().Set("X-Pin", live)
		json.NewEncoder(w).Encode(map[string]any{"access_token": live, "pin": live, "user": map[string]any{"password": live}, "n": 2})
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	rec := exchange(1, "GET", "/login", "", 200, `{"access_token":"[REDACTED]","pin":"[REDACTED]","n":1}`)
	rec.Response.Header.Set("X-Pin", recording.Redacted)
	rec.Response.Header.Set("Location", "/next?code=1&token=[REDACTED]")
	rec.Response.Redacted = []string{"X-Pin", "pin", "access_token", "Location:token"}
	var got Result
	if _, err := Run(context.Background(), srv.Client(), []*recording.Exchange{rec}, ref, Options{Base: base, Diff: true},
		func(r Result) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(append(append([]string{got.Diff.Status}, got.Diff.Headers...), got.Diff.Body...), "\n")
	if strings.Contains(out, live) {
		t.Errorf("the diff shows a live secret: %s", out)
	}
	for _, want := range []string{"$.n: 1 -> 2", "code=1", "code=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("the diff lost %q: %s", want, out)
		}
	}
}

// TestLongAnswerIsBounded: --diff keeps at most MaxBody bytes of a live
// answer, and says it did not compare the body.
func TestLongAnswerIsBounded(t *testing.T) {
	chunk := []byte(strings.Repeat("x", 1<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 1 << 10 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	rec := exchange(1, "GET", "/big", "", 200, "short")
	var got Result
	if _, err := Run(context.Background(), srv.Client(), []*recording.Exchange{rec}, ref, Options{Base: base, Diff: true, MaxBody: 4 << 10},
		func(r Result) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if got.Error != "" || len(got.Diff.NotCompared) != 1 || !strings.Contains(got.Diff.NotCompared[0], "longer than 4096 bytes") || len(got.Diff.Body) != 0 {
		t.Errorf("%+v %+v", got, got.Diff)
	}
}
