package session

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Where a session lives: Secrets in its namespace, so that reading a
// snapshot (which holds the namespace's Secrets) takes the right to read
// Secrets there, and a lost laptop loses nothing. The head Secret, one
// name per namespace, is the session's lock and holds its Meta; the
// snapshot is JSON, gzip-compressed, cut into chunk Secrets of at most
// ChunkSize bytes (a Secret holds 1 MiB) owned by the head.
const (
	HeadName = "tether-session"
	// LabelSession is on the head and the chunks: the session's name.
	LabelSession = "tether.dev/session"
	// LabelPart is "head" or "chunk".
	LabelPart = "tether.dev/session-part"
	metaKey   = "session.json"
	chunkKey  = "snapshot.json.gz"
	// ChunkSize is the most compressed snapshot bytes one chunk Secret
	// holds.
	ChunkSize = 1_000_000
)

// ErrNoSession: the namespace has no session.
var ErrNoSession = errdefs.New(errdefs.ErrUser, "NO_SESSION", "no session")

// ChunkName is the name of the i-th chunk Secret.
func ChunkName(i int) string { return fmt.Sprintf("%s-%d", HeadName, i) }

// Meta describes a session; the head Secret holds it.
type Meta struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Since     time.Time `json:"since"`
	By        string    `json:"by"`
	// Include are the objects named at start; empty: every object of Kinds.
	Include []Ref `json:"include,omitempty"`
	// Objects counts the snapshot's objects.
	Objects int `json:"objects"`
	// ChunkHashes are the SHA-256 of each chunk's bytes; Hash that of the
	// uncompressed snapshot. Load refuses a snapshot that does not match.
	ChunkHashes []string `json:"chunkHashes"`
	Hash        string   `json:"hash"`
	Compression string   `json:"compression"` // gzip
	// Ready: the snapshot is complete (false while start writes it, and
	// after a start that died half way).
	Ready bool `json:"ready"`
}

// Snapshot is what a session saved.
type Snapshot struct {
	// Objects are normalised (Normalize), in the rollback's order.
	Objects []Object `json:"objects"`
	// Absent are objects Include named that did not exist at start.
	Absent []Ref `json:"absent,omitempty"`
}

// Object is one saved object.
type Object struct {
	Ref
	Object map[string]any `json:"object"`
}

// Store keeps sessions in the cluster.
type Store struct {
	CS kubernetes.Interface
}

// Begin creates the head of a session described by m, not ready: the
// namespace's lock. A namespace with a session already is a user error
// that names it.
func (s Store) Begin(ctx context.Context, m Meta) (*corev1.Secret, error) {
	head, err := toSecret(m)
	if err != nil {
		return nil, err
	}
	created, err := s.CS.CoreV1().Secrets(m.Namespace).Create(ctx, head, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, err := s.Head(ctx, m.Namespace)
		if err != nil {
			return nil, fmt.Errorf("namespace %s has a session already, which cannot be read: %w", m.Namespace, err)
		}
		return nil, errdefs.User("namespace %s has a session already: %q, started %s by %s; "+
			"`tether session end -n %s` keeps its changes and drops it, `tether session rollback -n %s` undoes them",
			m.Namespace, old.Name, old.Since.Format(time.RFC3339), old.By, m.Namespace, m.Namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("create the session's head secret/%s in %s: %w", HeadName, m.Namespace, err)
	}
	return created, nil
}

// Write saves snap in chunks owned by head and marks the session ready.
func (s Store) Write(ctx context.Context, head *corev1.Secret, m Meta, snap *Snapshot) (Meta, error) {
	raw, err := json.Marshal(snap)
	if err != nil {
		return m, fmt.Errorf("encode the snapshot: %w", err)
	}
	sum := sha256.Sum256(raw)
	m.Hash = hex.EncodeToString(sum[:])
	m.Compression = "gzip"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		return m, err
	}
	if err := zw.Close(); err != nil {
		return m, err
	}
	data := gz.Bytes()
	m.ChunkHashes = nil
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Secret", Name: head.Name, UID: head.UID}
	for i := 0; i == 0 || len(data) > 0; i++ {
		n := min(len(data), ChunkSize)
		part := data[:n]
		data = data[n:]
		csum := sha256.Sum256(part)
		m.ChunkHashes = append(m.ChunkHashes, hex.EncodeToString(csum[:]))
		chunk := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: ChunkName(i), Namespace: m.Namespace,
				Labels:          map[string]string{LabelSession: labelValue(m.Name), LabelPart: "chunk"},
				OwnerReferences: []metav1.OwnerReference{owner}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{chunkKey: part},
		}
		if _, err := s.CS.CoreV1().Secrets(m.Namespace).Create(ctx, chunk, metav1.CreateOptions{}); err != nil {
			return m, fmt.Errorf("save the snapshot's secret/%s in %s: %w", chunk.Name, m.Namespace, err)
		}
	}
	m.Ready = true
	updated, err := toSecret(m)
	if err != nil {
		return m, err
	}
	head.Data = updated.Data
	if _, err := s.CS.CoreV1().Secrets(m.Namespace).Update(ctx, head, metav1.UpdateOptions{}); err != nil {
		return m, fmt.Errorf("mark the session ready in secret/%s: %w", HeadName, err)
	}
	return m, nil
}

// Head reads a namespace's session description; ErrNoSession when none.
func (s Store) Head(ctx context.Context, namespace string) (Meta, error) {
	sec, err := s.CS.CoreV1().Secrets(namespace).Get(ctx, HeadName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Meta{}, ErrNoSession
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read the session's secret/%s in %s: %w", HeadName, namespace, err)
	}
	return fromSecret(sec)
}

// Load reads a namespace's session and its snapshot, checking every chunk
// and the whole against the hashes the head holds: a snapshot changed
// since start is refused, naming the object that changed.
func (s Store) Load(ctx context.Context, namespace string) (Meta, *Snapshot, error) {
	m, err := s.Head(ctx, namespace)
	if err != nil {
		return m, nil, err
	}
	if !m.Ready {
		return m, nil, errdefs.User("session %q in %s was not fully started (the start was interrupted); "+
			"`tether session end -n %s` drops it, then start again", m.Name, namespace, namespace)
	}
	var gz bytes.Buffer
	for i, want := range m.ChunkHashes {
		name := ChunkName(i)
		sec, err := s.CS.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return m, nil, errdefs.FailedCheck("session %q in %s: its snapshot's secret/%s is gone; the snapshot cannot be used", m.Name, namespace, name)
		}
		if err != nil {
			return m, nil, fmt.Errorf("read the snapshot's secret/%s in %s: %w", name, namespace, err)
		}
		part := sec.Data[chunkKey]
		sum := sha256.Sum256(part)
		if hex.EncodeToString(sum[:]) != want {
			return m, nil, errdefs.FailedCheck("session %q in %s: secret/%s changed after the session started (its hash does not match the one in secret/%s); "+
				"the snapshot cannot be trusted and tether will not restore from it", m.Name, namespace, name, HeadName)
		}
		gz.Write(part)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		return m, nil, errdefs.FailedCheck("session %q in %s: the snapshot is not gzip data: %v", m.Name, namespace, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return m, nil, errdefs.FailedCheck("session %q in %s: the snapshot does not decompress: %v", m.Name, namespace, err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != m.Hash {
		return m, nil, errdefs.FailedCheck("session %q in %s: the snapshot does not match the hash in secret/%s; tether will not restore from it", m.Name, namespace, HeadName)
	}
	var snap Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		return m, nil, errdefs.FailedCheck("session %q in %s: decode the snapshot: %v", m.Name, namespace, err)
	}
	for i := range snap.Objects {
		snap.Objects[i].Object, _ = dropNulls(snap.Objects[i].Object).(map[string]any)
	}
	return m, &snap, nil
}

// Drop deletes a namespace's session: its chunks, then its head. Chunks
// an interrupted start left unrecorded are owned by the head: the garbage
// collector removes them with it.
func (s Store) Drop(ctx context.Context, namespace string) (Meta, error) {
	m, err := s.Head(ctx, namespace)
	if err != nil && !errors.Is(err, errdefs.ErrFailedCheck) {
		return m, err
	}
	secrets := s.CS.CoreV1().Secrets(namespace)
	for i := range m.ChunkHashes {
		if err := secrets.Delete(ctx, ChunkName(i), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return m, fmt.Errorf("delete the snapshot's secret/%s in %s: %w", ChunkName(i), namespace, err)
		}
	}
	if err := secrets.Delete(ctx, LogName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return m, fmt.Errorf("delete the session's log secret/%s in %s: %w", LogName, namespace, err)
	}
	if err := secrets.Delete(ctx, HeadName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return m, fmt.Errorf("delete the session's secret/%s in %s: %w", HeadName, namespace, err)
	}
	return m, nil
}

// List returns the sessions of every namespace the user may list Secrets
// in ("" for all).
func (s Store) List(ctx context.Context, namespace string) ([]Meta, error) {
	list, err := s.CS.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelPart + "=head"})
	if err != nil {
		return nil, err
	}
	var out []Meta
	for i := range list.Items {
		if m, err := fromSecret(&list.Items[i]); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func toSecret(m Meta) (*corev1.Secret, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the session: %w", err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: HeadName, Namespace: m.Namespace,
			Labels: map[string]string{LabelSession: labelValue(m.Name), LabelPart: "head"},
			Annotations: map[string]string{"tether.dev/purpose": "a tether debugging session's snapshot; " +
				"`tether session rollback` restores it, `tether session end` drops it"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{metaKey: b},
	}, nil
}

func fromSecret(sec *corev1.Secret) (Meta, error) {
	var m Meta
	raw, ok := sec.Data[metaKey]
	if !ok {
		return m, errdefs.FailedCheck("secret/%s in %s is not a tether session (no %s)", sec.Name, sec.Namespace, metaKey)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, errdefs.FailedCheck("secret/%s in %s: decode the session: %v", sec.Name, sec.Namespace, err)
	}
	return m, nil
}

// labelValue shortens s to a valid label value.
func labelValue(s string) string {
	if len(s) <= 63 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:50] + "-" + hex.EncodeToString(sum[:6])
}
