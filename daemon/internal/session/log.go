package session

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The session's log: what was done during it (reproduce runs, rollbacks),
// for `tether session report`. It is a Secret beside the head, owned by
// it (ending the session drops it), because a reproduce run's record names
// requests whose targets may carry data as sensitive as the namespace's
// Secrets. Events are opaque JSON here; the daemon's API gives them form.
const (
	LogName = "tether-session-log"
	logKey  = "events.json"
	// logMaxBytes bounds the log below a Secret's 1 MiB: the oldest
	// events go first.
	logMaxBytes = 900_000
)

// Log returns the session's events, oldest first; none before the first
// append.
func (s Store) Log(ctx context.Context, namespace string) ([]json.RawMessage, error) {
	sec, err := s.CS.CoreV1().Secrets(namespace).Get(ctx, LogName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the session's log secret/%s in %s: %w", LogName, namespace, err)
	}
	return decodeLog(sec)
}

// Append adds event to the log of the session in namespace, creating the
// log on the first event; concurrent appends retry on conflict.
func (s Store) Append(ctx context.Context, namespace string, event any) error {
	raw, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("encode the session event: %w", err)
	}
	secrets := s.CS.CoreV1().Secrets(namespace)
	for attempt := 0; ; attempt++ {
		head, err := secrets.Get(ctx, HeadName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ErrNoSession
		}
		if err != nil {
			return fmt.Errorf("read the session's secret/%s in %s: %w", HeadName, namespace, err)
		}
		sec, err := secrets.Get(ctx, LogName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: LogName, Namespace: namespace,
					Labels:          map[string]string{LabelSession: head.Labels[LabelSession], LabelPart: "log"},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: head.Name, UID: head.UID}},
					Annotations:     map[string]string{"tether.dev/purpose": "what was done during the tether session: `tether session report` reads it"}},
				Type: corev1.SecretTypeOpaque,
			}
			sec.Data = map[string][]byte{logKey: encodeLog([]json.RawMessage{raw})}
			_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		case err != nil:
			return fmt.Errorf("read the session's log secret/%s in %s: %w", LogName, namespace, err)
		default:
			events, derr := decodeLog(sec)
			if derr != nil {
				return derr
			}
			sec.Data = map[string][]byte{logKey: encodeLog(append(events, raw))}
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err == nil {
			return nil
		}
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 5 {
			continue
		}
		return fmt.Errorf("write the session's log secret/%s in %s: %w", LogName, namespace, err)
	}
}

func decodeLog(sec *corev1.Secret) ([]json.RawMessage, error) {
	var events []json.RawMessage
	if raw := sec.Data[logKey]; len(raw) > 0 {
		if err := json.Unmarshal(raw, &events); err != nil {
			return nil, fmt.Errorf("secret/%s in %s: decode the session's log: %w", sec.Name, sec.Namespace, err)
		}
	}
	return events, nil
}

// encodeLog writes events as a JSON array, dropping the oldest past
// logMaxBytes (the newest always stays).
func encodeLog(events []json.RawMessage) []byte {
	size := 2
	keep := len(events)
	for i := len(events) - 1; i >= 0; i-- {
		size += len(events[i]) + 1
		if size > logMaxBytes && i < len(events)-1 {
			break
		}
		keep = i
	}
	b, _ := json.Marshal(events[keep:])
	return b
}
