package journal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/internal/errdefs"
)

// ErrTampered means a journal fails its integrity check: it was edited
// outside tether, its key Secret is missing, or an older tether wrote it.
// tether restores nothing from it.
var ErrTampered = errdefs.New(errdefs.ErrFailedCheck, "JOURNAL_TAMPERED", "journal fails its integrity check")

// Store keeps journals as ConfigMaps.
type Store struct {
	CS kubernetes.Interface
}

// Load returns w's journal, or nil when there is none. It verifies the
// journal's MAC and that it describes w; see ErrTampered.
func (s Store) Load(ctx context.Context, w Workload) (*Entry, error) {
	e, _, err := s.load(ctx, w)
	return e, err
}

func (s Store) load(ctx context.Context, w Workload) (*Entry, *corev1.ConfigMap, error) {
	cm, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Get(ctx, w.ConfigMapName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read journal of %s: %w", w, err)
	}
	tampered := func(why string) error {
		return errdefs.Withf(ErrTampered, "journal configmap/%s in namespace %s %s; tether restores nothing from it. "+
			"Compare it with %s and its Services, restore them by hand if needed, then delete it "+
			"(kubectl -n %s delete configmap %s)", cm.Name, w.Namespace, why, w, w.Namespace, cm.Name)
	}
	key, keyUID, _, err := s.key(ctx, w, false)
	if err != nil {
		if errors.Is(err, errNoKey) {
			return nil, nil, tampered("has no key (secret/" + w.KeySecretName() + " is missing or not tether's)")
		}
		return nil, nil, err
	}
	got, err := hex.DecodeString(cm.Data[macKey])
	if err != nil || !hmac.Equal(got, mac(key, cm)) {
		return nil, nil, tampered("was changed outside tether (its MAC does not match)")
	}
	e, err := FromConfigMap(cm)
	if err != nil {
		return nil, nil, err
	}
	if e.Workload != w {
		return nil, nil, tampered(fmt.Sprintf("describes %s in namespace %s", e.Workload, e.Workload.Namespace))
	}
	e.resourceVersion, e.keyUID, e.key, e.cm = cm.ResourceVersion, keyUID, key, cm
	return e, cm, nil
}

// Begin returns w's journal, creating it with original as the template to
// restore when there is none yet. An existing journal keeps the original it
// recorded first: a second change to the same workload still rolls back to
// the state before tether touched it. The result's Created says which.
func (s Store) Begin(ctx context.Context, e *Entry) (*Entry, error) {
	return s.begin(ctx, e, 0)
}

// BeginNew is Begin for a workload whose journal the caller has just
// found missing, as most are: the key and the journal are created with
// no read before them (two requests fewer). Where a key is there after
// all, it goes on as Begin does.
func (s Store) BeginNew(ctx context.Context, e *Entry) (*Entry, error) {
	if key, keyUID, ok := s.newKey(ctx, e.Workload); ok {
		return s.create(ctx, e, key, keyUID, true, 0)
	}
	return s.begin(ctx, e, 0)
}

func (s Store) begin(ctx context.Context, e *Entry, attempt int) (*Entry, error) {
	if cur, err := s.Load(ctx, e.Workload); err != nil || cur != nil {
		return cur, err
	}
	key, keyUID, keyCreated, err := s.key(ctx, e.Workload, true)
	if errors.Is(err, errNoKey) {
		return nil, errdefs.User("secret %s in namespace %s is not tether's journal key; tether keeps its key there: rename or delete it",
			e.Workload.KeySecretName(), e.Workload.Namespace)
	}
	if err != nil {
		return nil, err
	}
	return s.create(ctx, e, key, keyUID, keyCreated, attempt)
}

// create writes e as w's new journal, sealed with key (its Secret's UID
// keyUID, created by this begin when keyCreated).
func (s Store) create(ctx context.Context, e *Entry, key []byte, keyUID types.UID, keyCreated bool, attempt int) (*Entry, error) {
	dropKey := func() {
		if keyCreated {
			_ = s.CS.CoreV1().Secrets(e.Workload.Namespace).Delete(ctx, e.Workload.KeySecretName(),
				metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &keyUID}})
		}
	}
	cm, err := e.ToConfigMap()
	if err != nil {
		dropKey()
		return nil, err
	}
	seal(key, cm)
	stored, err := s.CS.CoreV1().ConfigMaps(e.Workload.Namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: "tether"})
	if apierrors.IsAlreadyExists(err) {
		// Another tether got there first, perhaps sealing its journal with
		// the key this begin made: the key stays.
		return s.Load(ctx, e.Workload)
	}
	if err != nil {
		// Nothing of this attempt may remain: the key goes with the journal
		// it was made for (the UID precondition spares a key made since).
		dropKey()
		return nil, refused(fmt.Sprintf("write journal of %s (ConfigMap %s)", e.Workload, e.Workload.ConfigMapName()), err)
	}
	// A rollback's cleanup of a key left without its journal
	// (DropOrphanKey) may have removed the key between its read and the
	// journal's create: this journal could then never be verified. Take
	// it back and begin again.
	sec, err := s.CS.CoreV1().Secrets(e.Workload.Namespace).Get(ctx, e.Workload.KeySecretName(), metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read the journal key of %s: %w", e.Workload, err)
	}
	if err != nil || sec.UID != keyUID {
		rv := stored.ResourceVersion
		_ = s.CS.CoreV1().ConfigMaps(e.Workload.Namespace).Delete(ctx, e.Workload.ConfigMapName(),
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if attempt >= 2 {
			return nil, fmt.Errorf("begin the journal of %s: its key keeps being removed (another tether rolling it back?): run the command again", e.Workload)
		}
		return s.begin(ctx, e, attempt+1)
	}
	out := *e
	out.resourceVersion, out.created, out.keyUID, out.key, out.cm = stored.ResourceVersion, true, keyUID, key, stored
	return &out, nil
}

// Update applies change to w's journal as stored now and writes it back if
// the journal did not change meanwhile; on a conflict it reads the journal
// again and reapplies change, so concurrent updates by other tethers are
// kept. It returns the entry as written.
func (s Store) Update(ctx context.Context, w Workload, change func(*Entry) error) (*Entry, error) {
	var out *Entry
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		e, cm, err := s.load(ctx, w)
		if err != nil {
			return err
		}
		if e == nil {
			return errdefs.NotFound("the journal of %s in namespace %s is gone (someone rolled it back meanwhile)", w, w.Namespace)
		}
		key := e.key // read and checked by load, moments ago
		if err := change(e); err != nil {
			return err
		}
		want, err := e.ToConfigMap()
		if err != nil {
			return err
		}
		seal(key, want)
		cm.Data, cm.Labels = want.Data, want.Labels // cm carries the resourceVersion read: a precondition
		stored, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "tether"})
		if err != nil {
			return err
		}
		e.resourceVersion, e.cm = stored.ResourceVersion, stored
		out = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update journal of %s: %w", w, err)
	}
	return out, nil
}

// UpdateFrom is Update for a journal this process read or wrote as last:
// it applies change to a copy of last and writes it in one request, on
// the condition that the journal is still at last's version (so still
// as verified then); when it is not (another tether changed it), it is
// Update, which reads and verifies it again. An intercept writes its
// journal several times in a row, each a read of the journal and its key
// and a write with Update.
func (s Store) UpdateFrom(ctx context.Context, last *Entry, change func(*Entry) error) (*Entry, error) {
	w := last.Workload
	if last.cm == nil || last.key == nil || last.resourceVersion != last.cm.ResourceVersion {
		return s.Update(ctx, w, change)
	}
	e, err := FromConfigMap(last.cm) // a copy for change to edit
	if err != nil {
		return s.Update(ctx, w, change)
	}
	e.resourceVersion, e.keyUID, e.key = last.resourceVersion, last.keyUID, last.key
	if err := change(e); err != nil {
		return nil, err
	}
	want, err := e.ToConfigMap()
	if err != nil {
		return nil, err
	}
	seal(e.key, want)
	cm := last.cm.DeepCopy() // its resourceVersion: the precondition
	cm.Data, cm.Labels = want.Data, want.Labels
	stored, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "tether"})
	if apierrors.IsConflict(err) {
		return s.Update(ctx, w, change)
	}
	if err != nil {
		return nil, fmt.Errorf("update journal of %s: %w", w, err)
	}
	e.resourceVersion, e.cm = stored.ResourceVersion, stored
	return e, nil
}

// Delete removes e's journal and its key if the journal is still as e was
// read (a conflict means another tether changed it since: load it again).
// A missing journal is not an error.
func (s Store) Delete(ctx context.Context, e *Entry) error {
	w := e.Workload
	opts := metav1.DeleteOptions{}
	if e.resourceVersion != "" {
		opts.Preconditions = &metav1.Preconditions{ResourceVersion: &e.resourceVersion}
	}
	err := s.CS.CoreV1().ConfigMaps(w.Namespace).Delete(ctx, w.ConfigMapName(), opts)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete journal of %s: %w", w, err)
	}
	// The key goes unless a new journal was begun meanwhile (it reuses the
	// key); the UID precondition keeps a key made since.
	if _, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Get(ctx, w.ConfigMapName(), metav1.GetOptions{}); err == nil {
		return nil
	}
	kopts := metav1.DeleteOptions{}
	if e.keyUID != "" {
		kopts.Preconditions = &metav1.Preconditions{UID: &e.keyUID}
	}
	err = s.CS.CoreV1().Secrets(w.Namespace).Delete(ctx, w.KeySecretName(), kopts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete the journal key of %s: %w", w, err)
	}
	return nil
}

// List returns the journals in namespace ("" for every namespace the user
// may list), sorted by namespace and workload. It does not verify them:
// it says what exists; Load, before any use, verifies.
func (s Store) List(ctx context.Context, namespace string) ([]*Entry, error) {
	l, err := s.CS.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	out := make([]*Entry, 0, len(l.Items))
	for i := range l.Items {
		e, err := FromConfigMap(&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Workload, out[j].Workload
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.String() < b.String()
	})
	return out, nil
}

// DropOrphanKey removes w's journal key when w has no journal: the key a
// rollback interrupted between deleting the journal and its key left
// (preconditions on its UID and version: a key touched since stays). A
// journal being begun meanwhile (its key comes first) notices and begins
// again (Begin). It reports whether it removed a key.
func (s Store) DropOrphanKey(ctx context.Context, w Workload) (bool, error) {
	if _, err := s.CS.CoreV1().ConfigMaps(w.Namespace).Get(ctx, w.ConfigMapName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return false, err // a journal (or an error reading it): not an orphan
	}
	sec, err := s.CS.CoreV1().Secrets(w.Namespace).Get(ctx, w.KeySecretName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if sec.Labels[LabelJournalKey] != "true" {
		return false, nil
	}
	uid, rv := sec.UID, sec.ResourceVersion
	err = s.CS.CoreV1().Secrets(w.Namespace).Delete(ctx, w.KeySecretName(),
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("delete the journal key %s left without its journal: %w", w.KeySecretName(), err)
	}
	return true, nil
}

var errNoKey = errors.New("no journal key")

// key returns the key of w's journal and the UID of its Secret, creating
// it if create. A leftover key (a rollback that died between deleting the
// journal and its key) is reused.
func (s Store) key(ctx context.Context, w Workload, create bool) ([]byte, types.UID, bool, error) {
	secrets := s.CS.CoreV1().Secrets(w.Namespace)
	sec, err := secrets.Get(ctx, w.KeySecretName(), metav1.GetOptions{})
	created := false
	if apierrors.IsNotFound(err) && create {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, "", false, err
		}
		sec, err = secrets.Create(ctx, keySecret(w, raw), metav1.CreateOptions{FieldManager: "tether"})
		switch {
		case apierrors.IsAlreadyExists(err):
			sec, err = secrets.Get(ctx, w.KeySecretName(), metav1.GetOptions{})
		case err == nil:
			created = true
		case !apierrors.IsNotFound(err):
			return nil, "", false, refused(fmt.Sprintf("create the journal key of %s (Secret %s)", w, w.KeySecretName()), err)
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, "", false, errNoKey
	case err != nil:
		return nil, "", false, fmt.Errorf("read the journal key of %s: %w", w, err)
	case sec.Labels[LabelJournalKey] != "true" || len(sec.Data[secretKey]) < 32:
		return nil, "", false, errNoKey
	}
	return sec.Data[secretKey], sec.UID, created, nil
}

// newKey creates w's journal key where there is none: ok is false when
// it was not created (a key is there already, or the server refused),
// and the caller reads what is there.
func (s Store) newKey(ctx context.Context, w Workload) (key []byte, uid types.UID, ok bool) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", false
	}
	sec, err := s.CS.CoreV1().Secrets(w.Namespace).Create(ctx, keySecret(w, raw), metav1.CreateOptions{FieldManager: "tether"})
	if err != nil {
		return nil, "", false
	}
	return raw, sec.UID, true
}

func keySecret(w Workload, raw []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: w.KeySecretName(), Labels: map[string]string{LabelJournalKey: "true"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{secretKey: raw},
	}
}

// refused wraps the API server's refusal of a write tether makes before
// changing anything. A refusal by admission (a ResourceQuota, a policy, a
// webhook, RBAC) or of an invalid object is the user's to fix: it is said
// as such, with the server's reason, and that nothing changed.
func refused(what string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
		return errdefs.Mark(errdefs.ErrUser, fmt.Errorf("%s: the API server refused it, so nothing in the cluster was changed: %w; "+
			"allow it (a ResourceQuota's configmaps or secrets count, an admission policy) and run the command again", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// mac authenticates cm's journal and where it lives.
func mac(key []byte, cm *corev1.ConfigMap) []byte {
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "%s\x00%s\x00%s", cm.Namespace, cm.Name, cm.Data[dataKey])
	return h.Sum(nil)
}

func seal(key []byte, cm *corev1.ConfigMap) {
	cm.Data[macKey] = hex.EncodeToString(mac(key, cm))
}
