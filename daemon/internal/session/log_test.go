package session

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
)

func TestLog(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	st := Store{CS: cs}
	if err := st.Append(ctx, "shop", map[string]int{"n": 0}); !errors.Is(err, ErrNoSession) {
		t.Fatalf("append without a session: %v", err)
	}
	m := Meta{Name: "incident-42", Namespace: "shop", Since: time.Now()}
	head, err := st.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(ctx, head, m, &Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Log(ctx, "shop"); err != nil || len(got) != 0 {
		t.Fatalf("empty log: %v %v", got, err)
	}
	for i := range 3 {
		if err := st.Append(ctx, "shop", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Log(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, r := range got {
		ns = append(ns, string(r))
	}
	if strings.Join(ns, " ") != `{"n":0} {"n":1} {"n":2}` {
		t.Errorf("log %v", ns)
	}
	sec, err := cs.CoreV1().Secrets("shop").Get(ctx, LogName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Name != HeadName || sec.Labels[LabelPart] != "log" {
		t.Errorf("the log is not the head's: %+v %v", sec.OwnerReferences, sec.Labels)
	}
	// Ending the session drops the log with it.
	if _, err := st.Drop(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("shop").Get(ctx, LogName, metav1.GetOptions{}); err == nil {
		t.Error("the log survived the session's end")
	}
}

// Past logMaxBytes the oldest events go; the newest always stays.
func TestEncodeLogBound(t *testing.T) {
	big := json.RawMessage(`"` + strings.Repeat("x", 400_000) + `"`)
	var events []json.RawMessage
	for range 4 {
		events = append(events, big)
	}
	events = append(events, json.RawMessage(`{"last":true}`))
	var got []json.RawMessage
	if err := json.Unmarshal(encodeLog(events), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[2]) != `{"last":true}` {
		t.Errorf("%d events kept, last %s", len(got), got[len(got)-1])
	}
	huge := json.RawMessage(`"` + strings.Repeat("y", 2*logMaxBytes) + `"`)
	if err := json.Unmarshal(encodeLog([]json.RawMessage{big, huge}), &got); err != nil || len(got) != 1 {
		t.Errorf("a single huge event: %d kept, %v", len(got), err)
	}
}
