package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon/internal/fakekube"
	"github.com/tetherkube/tether/internal/errdefs"
)

// bigSnapshot holds n random (incompressible) bytes in a Secret's data.
func bigSnapshot(t *testing.T, n int) *Snapshot {
	t.Helper()
	raw := make([]byte, n)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	s := Normalize(secret("blob", map[string]any{"blob": base64.StdEncoding.EncodeToString(raw)}).Object)
	// A deployment's numbers come back from JSON as float64: Load makes
	// them int64 again, as client-go decodes the cluster's objects.
	d := Normalize(deployment("orders:1", 3).Object)
	return &Snapshot{Objects: []Object{{Ref: Ref{Kind: "Secret", Name: "blob"}, Object: s}, {Ref: Ref{Kind: "Deployment", Name: "orders"}, Object: d}},
		Absent: []Ref{{Kind: "Deployment", Name: "later"}}}
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	cs := fakekube.New()
	st := Store{CS: cs}
	m := Meta{Name: "incident-42", Namespace: "shop", Since: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), By: "ana", Objects: 1}
	head, err := st.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Load(ctx, "shop"); err == nil || !strings.Contains(err.Error(), "not fully started") {
		t.Errorf("a session being started: %v", err)
	}
	snap := bigSnapshot(t, 1_500_000) // 2 MB of base64, ~1.5 MB gzipped: two chunks
	m, err = st.Write(ctx, head, m, snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ChunkHashes) != 2 {
		t.Errorf("%d chunks, want 2", len(m.ChunkHashes))
	}
	gotMeta, got, err := st.Load(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(m, gotMeta); diff != "" {
		t.Errorf("meta (-want +got):\n%s", diff)
	}

	// A second session in the namespace: a user error naming the first.
	_, err = st.Begin(ctx, Meta{Name: "other", Namespace: "shop"})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), `has a session already: "incident-42"`) {
		t.Errorf("second session: %v", err)
	}

	// A chunk changed after the fact: refused, naming it.
	c, err := cs.CoreV1().Secrets("shop").Get(ctx, ChunkName(1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Data[chunkKey][10] ^= 1
	if _, err := cs.CoreV1().Secrets("shop").Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Load(ctx, "shop")
	if !errors.Is(err, errdefs.ErrFailedCheck) || !strings.Contains(err.Error(), "secret/tether-session-1 changed after the session started") {
		t.Errorf("tampered chunk: %v", err)
	}

	if _, err := st.Drop(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d secrets left after Drop", len(list.Items))
	}
	if _, err := st.Head(ctx, "shop"); !errors.Is(err, ErrNoSession) {
		t.Errorf("after Drop: %v, want ErrNoSession", err)
	}
}
