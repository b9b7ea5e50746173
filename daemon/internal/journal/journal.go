// Package journal records, in the cluster, every object tether is about to
// change, before it changes it, so that any machine can restore the exact
// previous state later, even after the laptop that made the change died.
//
// One ConfigMap per workload, in the workload's namespace, holds the
// workload's original pod template, the original ports of each Service
// tether retargeted, the token Secret tether created, and hashes of what
// tether applied, so a rollback can tell whether someone else changed the
// object since.
//
// A journal is authenticated: an HMAC-SHA256 of its content, keyed by a
// random key in a tether-owned Secret created with it, sits beside the
// content, and Load refuses a journal whose MAC does not match. Someone who
// can edit the ConfigMap but not read that Secret cannot make a rollback do
// anything tether did not journal; someone who can read Secrets there could
// as well edit the workload directly.
package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/internal/agentspec"
)

// Labels on every journal ConfigMap (internal/agentspec holds them, for
// the CLI's doctor and gather-logs too).
const (
	LabelJournal      = agentspec.LabelJournal
	LabelWorkloadKind = agentspec.LabelWorkloadKind
	LabelWorkloadName = agentspec.LabelWorkloadName
	// LabelJournalKey marks the Secret holding a journal's key.
	LabelJournalKey = agentspec.LabelJournalKey
	// LabelAgentToken marks the Secret holding an agent's token.
	LabelAgentToken = agentspec.LabelAgentToken
	// LabelGateway marks the gateway Deployment tether creates for `tether
	// run` where no workload is named, and its pods.
	LabelGateway = agentspec.LabelGateway
	// AnnotationCreatedFor on a token Secret holds the entry's SecretNonce
	// it was created for.
	AnnotationCreatedFor = "tether.dev/created-for"
	// AnnotationBack on a Service says when a tether last brought the
	// agents back in front of its pods after they stepped aside; setting
	// it changes the Service's version, which fails a concurrent
	// stepping aside (daemon/internal/intercept/aside.go). Rollback
	// removes it.
	AnnotationBack = "tether.dev/agents-back"
	dataKey        = "journal.json"
	macKey         = "journal.mac"
	secretKey      = "key"
)

// Workload names a workload tether changed.
type Workload struct {
	Kind      string `json:"kind"` // Deployment or StatefulSet
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (w Workload) String() string {
	return strings.ToLower(w.Kind) + "/" + w.Name
}

// ConfigMapName is the name of w's journal.
func (w Workload) ConfigMapName() string {
	return objectName("tether-journal-" + strings.ToLower(w.Kind) + "-" + w.Name)
}

// KeySecretName is the name of the Secret holding the key that
// authenticates w's journal.
func (w Workload) KeySecretName() string {
	return objectName("tether-journal-key-" + strings.ToLower(w.Kind) + "-" + w.Name)
}

// TokenSecretName is the name of the Secret holding the token of w's agent.
func (w Workload) TokenSecretName() string {
	return objectName("tether-agent-" + strings.ToLower(w.Kind) + "-" + w.Name)
}

// objectName shortens name to a valid object name.
func objectName(name string) string {
	if len(name) > 253 {
		sum := sha256.Sum256([]byte(name))
		name = name[:240] + "-" + hex.EncodeToString(sum[:6])
	}
	return name
}

// Entry is one workload's journal.
type Entry struct {
	Workload Workload `json:"workload"`
	// Template is the workload's pod template before tether changed it.
	Template corev1.PodTemplateSpec `json:"template"`
	// AppliedTemplateHash is Hash of the template tether last applied, as
	// the server stored it; empty until known.
	AppliedTemplateHash string `json:"appliedTemplateHash,omitempty"`
	// Services are the Services tether retargeted, keyed by name.
	Services map[string]ServiceEntry `json:"services,omitempty"`
	// Secret is the token Secret tether created for the agent, and SecretUID
	// that Secret's UID once created: rollback deletes only that object.
	Secret    string    `json:"secret,omitempty"`
	SecretUID types.UID `json:"secretUID,omitempty"`
	// SecretNonce is journaled with Secret, before the Secret is created
	// with it in its AnnotationCreatedFor: a crash before SecretUID is
	// journaled still leaves rollback a way to tell tether's Secret.
	SecretNonce string `json:"secretNonce,omitempty"`
	// Gateway: tether created the workload itself (the gateway `tether
	// run` uses where no workload is named); rollback deletes it instead
	// of restoring a template. GatewayUID is its UID once created: rollback
	// deletes only that object.
	Gateway    bool      `json:"gateway,omitempty"`
	GatewayUID types.UID `json:"gatewayUID,omitempty"`
	// NoRestart: an intercept --no-restart's journal. It changed no pod
	// template (Template is the one read, for reference): it pointed the
	// Services at the agents of marked pods (ServiceEntry.Selector) and
	// labelled those pods (Marks).
	NoRestart bool `json:"noRestart,omitempty"`
	// Marks are the pods tether labelled, by pod name.
	Marks map[string]Mark `json:"marks,omitempty"`
	// Pin is set while a sidecar intercept holds a Service to one
	// ReplicaSet's pods during its rollout (intercept/pin.go); the
	// intercept clears it before it returns, so a journal that has it is
	// from one that stopped in between.
	Pin *Pin `json:"pin,omitempty"`
	// CreatedAt and By say when and by which tether the journal was begun.
	CreatedAt time.Time `json:"createdAt"`
	By        string    `json:"by"`

	// resourceVersion is the journal ConfigMap's version this entry was
	// read at; created says whether this entry's Begin created it.
	resourceVersion string
	created         bool
	// keyUID is the UID of the key Secret the entry was verified with, and
	// key that key, to seal the entry again without reading it twice.
	keyUID types.UID
	key    []byte
	// cm is the ConfigMap as read or written with this entry, for
	// UpdateFrom's single write.
	cm *corev1.ConfigMap
}

// Created reports whether the Begin that returned e created the journal
// (rather than finding one left by an earlier change).
func (e *Entry) Created() bool { return e.created }

// ServiceEntry is one Service's original ports, and its original selector
// when tether changed that too (--no-restart).
type ServiceEntry struct {
	Ports            []corev1.ServicePort `json:"ports"`
	AppliedPortsHash string               `json:"appliedPortsHash,omitempty"`
	// Selector is the original selector, set only when tether changes it;
	// AppliedSelectorHash is Hash of the selector tether set.
	Selector            map[string]string `json:"selector,omitempty"`
	AppliedSelectorHash string            `json:"appliedSelectorHash,omitempty"`
	// AsidePortsHash is Hash of the ports tether set when the workload's
	// idle agents stepped aside (the Service sent back to the app, the
	// agents left in the pods), and AsideFrom the ports before that, which
	// the next intercept sets again.
	AsidePortsHash string               `json:"asidePortsHash,omitempty"`
	AsideFrom      []corev1.ServicePort `json:"asideFrom,omitempty"`
}

// Pin is what a sidecar intercept changes to move a Service from a
// Deployment's old pods to its new ones in one step: the Service's
// selector, which also requires Label (the Deployment's
// pod-template-hash) at one value, and the Deployment's rollout settings,
// which keep the old pods until the switch.
type Pin struct {
	Service string `json:"service"`
	// Selector is the Service's selector before; a rollback restores it
	// from any selector that is Selector plus Label at some value.
	Selector map[string]string `json:"selector"`
	Label    string            `json:"label"`
	// Rollout is the Deployment's settings before; AppliedRolloutHash is
	// Hash of the settings tether set.
	Rollout            RolloutSettings `json:"rollout"`
	AppliedRolloutHash string          `json:"appliedRolloutHash"`
	// Releasing: the intercept that set the pin has returned, with the
	// settings set back, and its daemon sets the selector back once the
	// old pods are going. Another intercept waits for that.
	Releasing bool `json:"releasing,omitempty"`
}

// RolloutSettings are the fields of a Deployment that say how it rolls
// out.
type RolloutSettings struct {
	Strategy                appsv1.DeploymentStrategy `json:"strategy"`
	MinReadySeconds         int32                     `json:"minReadySeconds,omitempty"`
	ProgressDeadlineSeconds *int32                    `json:"progressDeadlineSeconds,omitempty"`
}

// SettingsOf returns d's rollout settings.
func SettingsOf(d *appsv1.Deployment) RolloutSettings {
	return RolloutSettings{Strategy: *d.Spec.Strategy.DeepCopy(), MinReadySeconds: d.Spec.MinReadySeconds,
		ProgressDeadlineSeconds: d.Spec.ProgressDeadlineSeconds}
}

// Apply sets s on d.
func (s RolloutSettings) Apply(d *appsv1.Deployment) {
	d.Spec.Strategy = *s.Strategy.DeepCopy()
	d.Spec.MinReadySeconds = s.MinReadySeconds
	d.Spec.ProgressDeadlineSeconds = s.ProgressDeadlineSeconds
}

// PinnedSelector reports whether sel is p's original selector plus p's
// label at some value, and that value.
func (p *Pin) PinnedSelector(sel map[string]string) (string, bool) {
	v, ok := sel[p.Label]
	if !ok || len(sel) != len(p.Selector)+1 {
		return "", false
	}
	for k, want := range p.Selector {
		if got, ok := sel[k]; !ok || got != want {
			return "", false
		}
	}
	return v, true
}

// Mark is a label tether put on a pod (--no-restart marks the pods whose
// agent answers): rollback sets it back to Previous (removes it when nil)
// on the pod with that UID, if it is still Value.
type Mark struct {
	UID      types.UID `json:"uid"`
	Label    string    `json:"label"`
	Value    string    `json:"value"`
	Previous *string   `json:"previous,omitempty"`
}

// Hash returns a stable digest of v's JSON form.
func Hash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("journal: hash %T: %v", v, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MadeSecret: s is the token Secret e's tether created, by the UID
// journaled once it was created, else (tether died before journaling it)
// by the nonce journaled before, which s carries in AnnotationCreatedFor.
// The label is checked too.
func (e *Entry) MadeSecret(s *corev1.Secret) bool {
	if s.Labels[LabelAgentToken] != "true" {
		return false
	}
	if e.SecretUID != "" {
		return s.UID == e.SecretUID
	}
	return e.SecretNonce != "" && s.Annotations[AnnotationCreatedFor] == e.SecretNonce
}

// ToConfigMap encodes e as its ConfigMap.
func (e *Entry) ToConfigMap() (*corev1.ConfigMap, error) {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode journal of %s: %w", e.Workload, err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      e.Workload.ConfigMapName(),
			Namespace: e.Workload.Namespace,
			Labels: map[string]string{
				LabelJournal:      "true",
				LabelWorkloadKind: strings.ToLower(e.Workload.Kind),
				LabelWorkloadName: labelSafe(e.Workload.Name),
			},
		},
		Data: map[string]string{dataKey: string(b)},
	}, nil
}

// FromConfigMap decodes a journal ConfigMap.
func FromConfigMap(cm *corev1.ConfigMap) (*Entry, error) {
	raw, ok := cm.Data[dataKey]
	if !ok {
		return nil, fmt.Errorf("configmap %s/%s is not a tether journal (no %s)", cm.Namespace, cm.Name, dataKey)
	}
	var e Entry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return nil, fmt.Errorf("decode journal %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return &e, nil
}

// labelSafe shortens a name to a valid label value.
func labelSafe(s string) string {
	if len(s) <= 63 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:50] + "-" + hex.EncodeToString(sum[:6])
}
