package replay

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/recording"
)

// TestPairMirrors: each copy pairs with the app's exchange of the same
// request recorded before it, once; a copy whose app exchange is gone is
// returned apart; the diff takes the app's answer as the reference.
func TestPairMirrors(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ex := func(id uint64, ms int, dest, method, target, body string, status int, answer string) *recording.Exchange {
		e := &recording.Exchange{ID: id, Time: t0.Add(time.Duration(ms) * time.Millisecond), Pod: "orders-x2x", Destination: dest,
			Request: recording.Message{Method: method, Target: target, Host: "orders", Header: http.Header{},
				Body: []byte(body), BodySize: int64(len(body))}}
		if status != 0 {
			e.Response = &recording.Message{Status: status, Header: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(answer), BodySize: int64(len(answer))}
		}
		return e
	}
	exchanges := []*recording.Exchange{
		ex(1, 0, recording.ToApp, "GET", "/orders/7", "", 200, `{"total":89}`),
		ex(2, 1, recording.ToApp, "GET", "/orders/7", "", 200, `{"total":89}`),
		ex(3, 2, recording.ToApp, "POST", "/orders", `{"item":"kettle"}`, 201, `{"id":8}`),
		ex(4, 3, recording.ToApp, "POST", "/orders", `{"item":"mug"}`, 201, `{"id":9}`),
		// The copies, after the app's answers; the second POST's copy first.
		ex(5, 5, recording.ToMirror, "POST", "/orders", `{"item":"mug"}`, 201, `{"id":9}`),
		ex(6, 6, recording.ToMirror, "GET", "/orders/7", "", 200, `{"total":44.5}`),
		ex(7, 7, recording.ToMirror, "GET", "/orders/7", "", 500, `{"error":"boom"}`),
		ex(8, 8, recording.ToMirror, "POST", "/orders", `{"item":"kettle"}`, 0, ""),
		// A copy whose app exchange was evicted.
		ex(9, 9, recording.ToMirror, "GET", "/orders/1", "", 200, `{}`),
		// An app exchange recorded after a copy of the same request cannot
		// be its original.
		ex(10, 10, recording.ToApp, "GET", "/orders/1", "", 200, `{}`),
	}
	exchanges[7].Error = "laptop not answering within 10s"
	pairs, unpaired := PairMirrors(exchanges, nil)
	type got struct {
		App, Mirror uint64
		Differs     bool
		Status      string
		Body        []string
		NotCompared []string
	}
	var gots []got
	for _, p := range pairs {
		gots = append(gots, got{p.App.ID, p.Mirror.ID, !p.Diff.Empty(), p.Diff.Status, p.Diff.Body, p.Diff.NotCompared})
	}
	want := []got{
		{4, 5, false, "", nil, nil},
		{1, 6, true, "", []string{"$.total: 89 -> 44.5"}, nil},
		{2, 7, true, "200 -> 500", []string{"$.error: (absent) -> \"boom\"", "$.total: 89 -> (absent)"}, nil},
		{3, 8, false, "", nil, []string{"the laptop gave no answer: laptop not answering within 10s"}},
	}
	if diff := cmp.Diff(want, gots); diff != "" {
		t.Errorf("pairs (-want +got):\n%s", diff)
	}
	if len(unpaired) != 1 || unpaired[0].ID != 9 {
		t.Errorf("unpaired: %v, want copy 9 alone", unpaired)
	}
}
