package intercept

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// ErrPortsChanged means a Service's ports are no longer the ones a change
// was planned from: someone else changed them meanwhile.
var ErrPortsChanged = errors.New("service ports changed meanwhile")

// errUndoIncomplete marks a failure whose undo had to leave something.
var errUndoIncomplete = errors.New("this attempt's changes were not all undone")

// attempt is what one Start changed, so that a failure undoes exactly
// that: not an older journal's original, and nothing someone else changed
// meanwhile.
type attempt struct {
	m     *Manager
	w     journal.Workload
	store journal.Store

	journalCreated bool
	// last is the journal as this attempt last wrote it (its version).
	last *journal.Entry
	// replaced maps each AppliedTemplateHash this attempt wrote to the
	// value it replaced.
	replaced map[string]string
	// addedService is the Service whose entry this attempt added, and
	// replacedPorts maps each AppliedPortsHash it wrote to the value it
	// replaced.
	addedService  string
	replacedPorts map[string]string

	prevSecret    string
	prevSecretUID types.UID
	secretCreated bool
	secretUID     types.UID
	// uidUnjournaled is the created Secret's UID, journaled with the
	// journal's next write (before the template changes): until then
	// the intent (name and nonce) finds it.
	uidUnjournaled types.UID

	tmplFrom, tmplTo   *corev1.PodTemplateSpec
	svc                string
	portsFrom, portsTo []corev1.ServicePort
	// pinned is the pinned rollout this attempt journaled (pin.go).
	pinned *pin
}

func newAttempt(m *Manager, store journal.Store, e *journal.Entry) *attempt {
	return &attempt{m: m, w: e.Workload, store: store, journalCreated: e.Created(), last: e,
		replaced: map[string]string{}, replacedPorts: map[string]string{}, prevSecret: e.Secret, prevSecretUID: e.SecretUID}
}

// update changes the journal (see journal.Store.Update).
func (a *attempt) update(ctx context.Context, change func(*journal.Entry) error) error {
	uid := a.uidUnjournaled
	if uid != "" {
		then := change
		change = func(e *journal.Entry) error {
			if err := then(e); err != nil {
				return err
			}
			journalSecret(e, a.w.TokenSecretName(), uid, "")
			return nil
		}
	}
	var e *journal.Entry
	var err error
	if a.last != nil {
		e, err = a.store.UpdateFrom(ctx, a.last, change)
	} else {
		e, err = a.store.Update(ctx, a.w, change)
	}
	if err == nil {
		a.last = e
		if uid != "" {
			a.uidUnjournaled = ""
		}
	}
	return err
}

// setAppliedHash journals h as the hash of the template tether applied.
func (a *attempt) setAppliedHash(ctx context.Context, h string) error {
	return a.update(ctx, func(e *journal.Entry) error {
		a.applied(e, h)
		return nil
	})
}

// applied sets h in e as the hash of the template tether applied.
func (a *attempt) applied(e *journal.Entry, h string) {
	if _, ours := a.replaced[e.AppliedTemplateHash]; !ours {
		a.replaced[h] = e.AppliedTemplateHash
	} else {
		a.replaced[h] = a.replaced[e.AppliedTemplateHash]
	}
	e.AppliedTemplateHash = h
}

// setAppliedPorts journals ports as what tether set on svc, with svc's
// ports as read (before tether's change) as the original unless an entry
// exists (another attempt may have journaled it and undone its own).
func (a *attempt) setAppliedPorts(ctx context.Context, svc *corev1.Service, ports []corev1.ServicePort) error {
	return a.update(ctx, func(e *journal.Entry) error {
		a.appliedPorts(e, svc, ports)
		return nil
	})
}

// appliedPorts sets ports in e as what tether set on svc (setAppliedPorts).
func (a *attempt) appliedPorts(e *journal.Entry, svc *corev1.Service, ports []corev1.ServicePort) {
	a.svc = svc.Name
	if e.Services == nil {
		e.Services = map[string]journal.ServiceEntry{}
	}
	se, ok := e.Services[svc.Name]
	if !ok {
		se.Ports = svc.Spec.Ports
	}
	h := journal.Hash(ports)
	if prev, ours := a.replacedPorts[se.AppliedPortsHash]; ours {
		a.replacedPorts[h] = prev
	} else {
		a.replacedPorts[h] = se.AppliedPortsHash
	}
	se.AppliedPortsHash = h
	e.Services[svc.Name] = se
}

// ensureToken returns the token for the workload's agent. A new agent
// always gets a fresh token, whatever a Secret of that name held; an agent
// already running keeps its token, read from the Secret tether journaled.
func (a *attempt) ensureToken(ctx context.Context) ([]byte, error) {
	for try := 1; ; try++ {
		token, err := a.ensureTokenOnce(ctx)
		// Another tether created or renewed it meanwhile: look again.
		if try < 3 && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
			continue
		}
		return token, err
	}
}

func (a *attempt) ensureTokenOnce(ctx context.Context) ([]byte, error) {
	name := a.w.TokenSecretName()
	secrets := a.m.CS.CoreV1().Secrets(a.w.Namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read agent token: %w", err)
	}
	found := err == nil
	// Whether an agent runs with this Secret now, not when the attempt
	// started: another tether may have added it meanwhile.
	now, err := workload.Client{CS: a.m.CS}.Template(ctx, a.w)
	if err != nil {
		return nil, err
	}
	if found && s.Labels[journal.LabelAgentToken] != "true" {
		return nil, errdefs.User("secret %s in namespace %s exists and is not tether's (no %s label); tether neither uses nor overwrites it: rename or delete it",
			name, a.w.Namespace, journal.LabelAgentToken)
	}
	if found && hasAgent(now) {
		// The running agents read this Secret: keep it, if it is the one
		// tether journaled.
		e, err := a.store.Load(ctx, a.w)
		if err != nil {
			return nil, err
		}
		if e == nil || e.SecretUID == "" || s.UID != e.SecretUID {
			return nil, errdefs.FailedCheck("secret %s in namespace %s is not the one tether created for the agent of %s; run `tether rollback %s` to start over",
				name, a.w.Namespace, a.w, a.w)
		}
		return s.Data[inject.TokenKey], nil
	}
	token, err := freshToken()
	if err != nil {
		return nil, err
	}
	if found {
		// A leftover no agent uses (an interrupted attempt): replace it, so
		// nobody who read its token can talk to the new agent. Delete and
		// create need no more permissions than tether already asks for.
		uid := s.UID
		err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("replace agent token secret: %w", err) // a conflict is retried
		}
	}
	// Journal the name before creating it, the UID once created.
	nonce, err := freshToken()
	if err != nil {
		return nil, err
	}
	if err := a.setSecret(ctx, name, "", string(nonce)); err != nil {
		return nil, err
	}
	s, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{journal.LabelAgentToken: "true"},
			Annotations: map[string]string{journal.AnnotationCreatedFor: string(nonce)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{inject.TokenKey: token},
	}, metav1.CreateOptions{FieldManager: "tether"})
	if err != nil {
		return nil, fmt.Errorf("create agent token secret: %w", err) // AlreadyExists is retried
	}
	a.secretCreated, a.secretUID, a.uidUnjournaled = true, s.UID, s.UID
	return token, nil
}

// setSecret journals the token Secret: before creating it, its name and
// the nonce it will carry (the intent); once created, its UID.
func (a *attempt) setSecret(ctx context.Context, name string, uid types.UID, nonce string) error {
	return a.update(ctx, func(e *journal.Entry) error {
		journalSecret(e, name, uid, nonce)
		return nil
	})
}

// journalSecret sets the token Secret in e: its name with the nonce it
// will carry (the intent), or with its UID.
func journalSecret(e *journal.Entry, name string, uid types.UID, nonce string) {
	// The intent alone keeps a UID another tether journaled for that
	// name.
	if uid != "" || e.Secret != name {
		e.SecretUID = uid
	}
	if nonce != "" {
		e.SecretNonce = nonce
	}
	e.Secret = name
}

func freshToken() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(raw)), nil
}

func hasAgent(t *corev1.PodTemplateSpec) bool {
	return slices.ContainsFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == inject.AgentContainer })
}

// undo reverts what the attempt changed, each object only if it is still
// what the attempt made it, and returns cause, with what it had to leave.
func (a *attempt) undo(ctx context.Context, cause error) error {
	var left []string
	if a.pinned != nil {
		// First: the Service then selects the pods of both templates
		// while the rest is undone.
		left = append(left, a.unpin(ctx)...)
	}
	portsUndone := a.portsTo == nil
	if !portsUndone {
		if _, err := setPorts(ctx, a.m.CS, a.w.Namespace, a.svc, a.portsTo, a.portsFrom); err != nil {
			left = append(left, fmt.Sprintf("service/%s (%v)", a.svc, err))
		} else {
			portsUndone = true
		}
	}
	tmplUndone := a.tmplTo == nil
	if !tmplUndone {
		if _, err := (workload.Client{CS: a.m.CS}).SetTemplate(ctx, a.w, *a.tmplTo, *a.tmplFrom); err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", a.w, err))
		} else {
			tmplUndone = true
		}
	}
	// The Secret and the journal this attempt created may since serve
	// another tether's agent (an intercept racing this one): keep them
	// while the template has an agent.
	agentNow, nowHash := true, ""
	if now, err := (workload.Client{CS: a.m.CS}).Template(ctx, a.w); err == nil {
		agentNow, nowHash = hasAgent(now), journal.Hash(now)
	} else if apierrors.IsNotFound(err) {
		agentNow = false
	}
	svcPorts, svcHash := []corev1.ServicePort(nil), ""
	if a.svc != "" || a.addedService != "" {
		name := a.svc
		if name == "" {
			name = a.addedService
		}
		if svc, err := a.m.CS.CoreV1().Services(a.w.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
			svcPorts, svcHash = svc.Spec.Ports, journal.Hash(svc.Spec.Ports)
		}
	}
	secretGone := false
	if a.secretCreated && tmplUndone && !agentNow {
		uid := a.secretUID
		err := a.m.CS.CoreV1().Secrets(a.w.Namespace).Delete(ctx, a.w.TokenSecretName(),
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("secret/%s (%v)", a.w.TokenSecretName(), err))
		} else {
			secretGone = true
		}
	}

	journalDone := false
	if a.journalCreated && len(left) == 0 && !agentNow {
		// Delete the journal this attempt began, unless another tether
		// journaled its own change in it meanwhile (its version differs
		// from the one this attempt last wrote).
		journalDone = a.store.Delete(ctx, a.last) == nil
	}
	if !journalDone {
		_, err := a.store.Update(ctx, a.w, func(e *journal.Entry) error {
			for name, se := range e.Services {
				if !portsUndone || (name != a.addedService && name != a.svc) {
					continue
				}
				// A hash that describes the ports as they are now stays.
				if prev, ours := a.replacedPorts[se.AppliedPortsHash]; ours && se.AppliedPortsHash != svcHash {
					se.AppliedPortsHash = prev
					e.Services[name] = se
				}
				// The entry this attempt added goes, unless the Service is
				// retargeted (by a racing tether) after all.
				if name == a.addedService && se.AppliedPortsHash == "" && equality.Semantic.DeepEqual(se.Ports, svcPorts) {
					delete(e.Services, name)
				}
			}
			// A hash that describes the template as it is now stays, even if
			// this attempt wrote it: a racing tether applied the same one.
			if prev, ours := a.replaced[e.AppliedTemplateHash]; ours && tmplUndone && e.AppliedTemplateHash != nowHash {
				e.AppliedTemplateHash = prev
			}
			if secretGone && e.SecretUID == a.secretUID {
				e.Secret, e.SecretUID = a.prevSecret, a.prevSecretUID
			}
			return nil
		})
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			left = append(left, fmt.Sprintf("the journal's record of this attempt (%v)", err))
		}
	}
	if len(left) == 0 {
		return cause
	}
	return fmt.Errorf("%w; %w: left as is: %s; run `tether rollback %s` to see what it can restore",
		cause, errUndoIncomplete, strings.Join(left, "; "), a.w)
}

// setPorts sets a Service's ports to to if they still are from, and
// returns them as stored. The update carries the resourceVersion read; on
// a conflict it reads again and retries while the ports still are from.
func setPorts(ctx context.Context, cs kubernetes.Interface, ns, name string, from, to []corev1.ServicePort) ([]corev1.ServicePort, error) {
	var stored []corev1.ServicePort
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !equality.Semantic.DeepEqual(svc.Spec.Ports, from) {
			return ErrPortsChanged
		}
		svc.Spec.Ports = to
		svc, err = cs.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		if err == nil {
			stored = svc.Spec.Ports
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update service %s: %w", name, err)
	}
	return stored, nil
}
