package inspect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/internal/errdefs"
)

// An inspection agent's token lives in two places, one after the other.
// Its bootstrap token is a literal in the pod's spec (the kubelet does not
// sync Secrets that only an ephemeral container references), so anyone who
// may read the pod reads it; the agent accepts it for one tunnel, within
// BootstrapTTL of its start. On that tunnel the daemon rotates it to a new
// token (agent.Service.Rotate) kept in a Secret of its own, which the pod
// owns: Kubernetes deletes it with the pod.

// BootstrapTTL is how long after its start an inspection agent accepts its
// bootstrap token.
const BootstrapTTL = 2 * time.Minute

const (
	tokenKey = "token"
	// tokenLabel marks tether's token Secrets.
	tokenLabel = "tether.dev/inspect-token"
)

// TokenSecretName is the Secret holding the rotated token of the agent
// container in pod: "<container>.<pod>" (a container name has no dot, so
// no two pairs share a name), hashed when that is too long for a name.
func TokenSecretName(pod, container string) string {
	name := container + "." + pod
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return container + "." + pod[:253-len(container)-2-16] + "-" + hex.EncodeToString(sum[:8])
}

// NewToken returns a fresh random token.
func NewToken() []byte {
	raw := make([]byte, 32)
	rand.Read(raw)
	return []byte(hex.EncodeToString(raw))
}

// storedTokens returns the rotated tokens of the pod's agents, by
// container name, from Secrets the pod owns. An agent whose Secret cannot
// be read (missing, forbidden, left by an earlier pod of the same name)
// has none.
func storedTokens(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, agents []agentState, progress func(string)) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, a := range agents {
		name := TokenSecretName(pod.Name, a.name)
		s, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case apierrors.IsForbidden(err):
			progress(fmt.Sprintf("may not read Secret %s (its agent's token), so tether cannot reuse agent %s", name, a.name))
			continue
		case err != nil:
			return nil, fmt.Errorf("read the token of agent %s: %w", a.name, err)
		}
		if ownedBy(s, pod) && len(s.Data[tokenKey]) > 0 {
			out[a.name] = s.Data[tokenKey]
		}
	}
	return out, nil
}

func ownedBy(s *corev1.Secret, pod *corev1.Pod) bool {
	for _, o := range s.OwnerReferences {
		if o.Kind == "Pod" && o.Name == pod.Name && o.UID == pod.UID {
			return true
		}
	}
	return false
}

// StoreToken keeps the rotated token of agent a in its own Secret, owned
// by the pod (deleted with it) and immutable.
func StoreToken(ctx context.Context, cs kubernetes.Interface, namespace string, a Agent, token []byte) error {
	name := TokenSecretName(a.Pod, a.Container)
	immutable := true
	_, err := cs.CoreV1().Secrets(namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{tokenLabel: "true"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: a.Pod, UID: a.PodUID}}},
		Immutable: &immutable,
		Data:      map[string][]byte{tokenKey: token},
	}, metav1.CreateOptions{FieldManager: "tether"})
	if apierrors.IsForbidden(err) {
		return errdefs.User("may not create Secret %s, where tether keeps the token of the agent it added to pod %s: %v; "+
			"the inspection commands need create on secrets (docs/inspect.md)", name, a.Pod, err)
	}
	if err != nil {
		return fmt.Errorf("keep the token of agent %s in Secret %s: %w", a.Container, name, err)
	}
	return nil
}
