// Package gateway runs the one agent `tether run` uses in a namespace where
// no workload is named: a Deployment of tether's agent alone, serving only
// the run job, so that the local process's connections leave from inside
// the namespace.
//
// The gateway is a change to the cluster like any other: journaled before
// it is made (journal.Entry.Gateway), so `tether rollback` deletes it, even
// from another machine. Its token lives in a Secret beside it, as a
// sidecar's does; every tether that may read that Secret shares the
// gateway.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/intercept"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Name is the gateway Deployment's name in every namespace.
const Name = "tether-gateway"

// Request says where the gateway runs.
type Request struct {
	Namespace, AgentImage string
	// Timeout bounds the wait for the gateway's pod (default 2 min).
	Timeout time.Duration
}

// Gateway is a running gateway pod and the token its agent accepts.
type Gateway struct {
	Pod   string
	Port  int
	Token []byte
	// Created: this call created the gateway.
	Created bool
}

// Workload is the gateway's journal name in namespace.
func Workload(namespace string) journal.Workload {
	return journal.Workload{Kind: "Deployment", Namespace: namespace, Name: Name}
}

// Ensure returns the namespace's running gateway, creating it (journaled
// first) when there is none. A failure while creating it removes what it
// created, journal included.
func Ensure(ctx context.Context, cs kubernetes.Interface, req Request, progress func(string)) (Gateway, error) {
	if req.Timeout == 0 {
		req.Timeout = 2 * time.Minute
	}
	w := Workload(req.Namespace)
	store := journal.Store{CS: cs}
	d, err := cs.AppsV1().Deployments(req.Namespace).Get(ctx, Name, metav1.GetOptions{})
	switch {
	case err == nil:
		return existing(ctx, cs, store, req, d, progress)
	case !apierrors.IsNotFound(err):
		return Gateway{}, fmt.Errorf("read %s: %w", w, err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, req.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return Gateway{}, errdefs.User("no namespace %q (`kubectl get namespaces` lists them)", req.Namespace)
	}
	progress(fmt.Sprintf("no workload named: adding the gateway deployment/%s to namespace %s (journaled; `tether rollback deployment/%s -n %s` removes it)",
		Name, req.Namespace, Name, req.Namespace))
	e, err := store.Begin(ctx, &journal.Entry{Workload: w, Gateway: true,
		CreatedAt: time.Now().UTC(), By: "tether " + buildinfo.Get().Version})
	if err != nil {
		return Gateway{}, err
	}
	if !e.Gateway {
		return Gateway{}, errdefs.FailedCheck("namespace %s has a journal for %s that is not a gateway's; run `tether rollback %s -n %s` first",
			req.Namespace, w, w, req.Namespace)
	}
	g, err := create(ctx, cs, store, req, progress)
	if err != nil {
		// Nothing half-done stays: delete what this attempt made, journal
		// last (a rollback finishes the job if this cleanup fails).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := undo(cctx, cs, store, w); cerr != nil {
			return Gateway{}, fmt.Errorf("%w (and removing the gateway failed: %v; `tether rollback deployment/%s -n %s` finishes it)", err, cerr, Name, req.Namespace)
		}
		return Gateway{}, err
	}
	return g, nil
}

// create makes the token Secret and the Deployment, journaling each, and
// waits for the gateway's pod.
func create(ctx context.Context, cs kubernetes.Interface, store journal.Store, req Request, progress func(string)) (Gateway, error) {
	w := Workload(req.Namespace)
	token, err := newToken()
	if err != nil {
		return Gateway{}, err
	}
	nonce, err := newToken()
	if err != nil {
		return Gateway{}, err
	}
	secret := w.TokenSecretName()
	// The name and the nonce the Secret will carry, journaled before it
	// exists: rollback knows it even if tether dies before its UID is.
	if _, err := store.Update(ctx, w, func(e *journal.Entry) error { e.Secret, e.SecretNonce = secret, string(nonce); return nil }); err != nil {
		return Gateway{}, err
	}
	s, err := cs.CoreV1().Secrets(req.Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret, Labels: map[string]string{journal.LabelAgentToken: "true"},
			Annotations: map[string]string{journal.AnnotationCreatedFor: string(nonce)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{inject.TokenKey: token},
	}, metav1.CreateOptions{FieldManager: "tether"})
	if apierrors.IsAlreadyExists(err) {
		return Gateway{}, errdefs.User("secret %s exists in namespace %s but no gateway does: a leftover, or not tether's; "+
			"`tether rollback deployment/%s -n %s` removes tether's, else rename or delete it", secret, req.Namespace, Name, req.Namespace)
	}
	if err != nil {
		return Gateway{}, fmt.Errorf("create the gateway's token secret: %w", err)
	}
	if _, err := store.Update(ctx, w, func(e *journal.Entry) error { e.SecretUID = s.UID; return nil }); err != nil {
		return Gateway{}, err
	}
	d, err := cs.AppsV1().Deployments(req.Namespace).Create(ctx, deployment(req, secret), metav1.CreateOptions{FieldManager: "tether"})
	if err != nil {
		return Gateway{}, fmt.Errorf("create the gateway deployment: %w", err)
	}
	if _, err := store.Update(ctx, w, func(e *journal.Entry) error { e.GatewayUID = d.UID; return nil }); err != nil {
		return Gateway{}, err
	}
	g, err := running(ctx, cs, req, progress)
	g.Token, g.Created = token, true
	return g, err
}

// existing returns the gateway that d runs, once it is checked to be the
// one tether journaled.
func existing(ctx context.Context, cs kubernetes.Interface, store journal.Store, req Request, d *appsv1.Deployment, progress func(string)) (Gateway, error) {
	w := Workload(req.Namespace)
	if d.Labels[journal.LabelGateway] != "true" {
		return Gateway{}, errdefs.User("deployment %s in namespace %s is not tether's gateway (no %s label); name a workload to run in, or rename it",
			Name, req.Namespace, journal.LabelGateway)
	}
	e, err := store.Load(ctx, w)
	if err != nil {
		return Gateway{}, err
	}
	if e == nil || !e.Gateway || e.GatewayUID != d.UID || e.Secret == "" {
		return Gateway{}, errdefs.FailedCheck("the gateway deployment/%s in namespace %s is not the one tether journaled; `tether rollback deployment/%s -n %s --force` and run again",
			Name, req.Namespace, Name, req.Namespace)
	}
	s, err := cs.CoreV1().Secrets(req.Namespace).Get(ctx, e.Secret, metav1.GetOptions{})
	if err != nil {
		return Gateway{}, fmt.Errorf("read the gateway's token: %w", err)
	}
	if s.UID != e.SecretUID || s.Labels[journal.LabelAgentToken] != "true" {
		return Gateway{}, errdefs.FailedCheck("secret %s in namespace %s is not the token tether made for its gateway; `tether rollback deployment/%s -n %s` and run again",
			e.Secret, req.Namespace, Name, req.Namespace)
	}
	g, err := running(ctx, cs, req, progress)
	g.Token = s.Data[inject.TokenKey]
	return g, err
}

// running waits for the gateway's pod to run its agent and returns it.
func running(ctx context.Context, cs kubernetes.Interface, req Request, progress func(string)) (Gateway, error) {
	w := Workload(req.Namespace)
	if err := intercept.WaitRollout(ctx, cs, w, req.Timeout, progress); err != nil {
		return Gateway{}, err
	}
	pods, err := cs.CoreV1().Pods(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: journal.LabelGateway + "=true"})
	if err != nil {
		return Gateway{}, fmt.Errorf("list the gateway's pods: %w", err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && ready(&p) {
			return Gateway{Pod: p.Name, Port: agent.DefaultTunnelPort}, nil
		}
	}
	return Gateway{}, errors.New("the gateway rolled out but none of its pods runs (it was deleted meanwhile?): run again")
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == inject.AgentContainer {
			return c.Ready
		}
	}
	return false
}

// undo deletes what a failed create made: the Deployment and the Secret
// (each only if it is the journaled one), then the journal.
func undo(ctx context.Context, cs kubernetes.Interface, store journal.Store, w journal.Workload) error {
	e, err := store.Load(ctx, w)
	if err != nil || e == nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	if e.GatewayUID != "" {
		if err := deleteIf(cs.AppsV1().Deployments(w.Namespace).Delete(ctx, w.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &e.GatewayUID}, PropagationPolicy: &bg})); err != nil {
			return fmt.Errorf("delete the gateway deployment: %w", err)
		}
	}
	if e.Secret != "" {
		s, err := cs.CoreV1().Secrets(w.Namespace).Get(ctx, e.Secret, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read the gateway's token secret: %w", err)
		}
		if err == nil && e.MadeSecret(s) {
			if err := deleteIf(cs.CoreV1().Secrets(w.Namespace).Delete(ctx, e.Secret, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &s.UID}})); err != nil {
				return fmt.Errorf("delete the gateway's token secret: %w", err)
			}
		}
	}
	return store.Delete(ctx, e)
}

// deleteIf ignores an object already gone or replaced (UID differs).
func deleteIf(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// deployment is the gateway: the agent alone, serving the run job, with
// no added capability and no service-account token (it needs none), so it
// runs where Pod Security is "restricted".
func deployment(req Request, secret string) *appsv1.Deployment {
	labels := map[string]string{journal.LabelGateway: "true", "app.kubernetes.io/name": Name, "app.kubernetes.io/managed-by": "tether"}
	one, no := int32(1), false
	mode := int32(0o444)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: labels, Annotations: map[string]string{
			"tether.dev/purpose": "tether run's connections leave the namespace from here; `tether rollback deployment/" + Name + "` removes it"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{journal.LabelGateway: "true"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: &no,
					EnableServiceLinks:           &no,
					Containers: []corev1.Container{{
						Name:            inject.AgentContainer,
						Image:           req.AgentImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"--token-file", inject.TokenMountPath + "/" + inject.TokenKey, "--serve", string(agent.JobRun), "--no-record"},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: inject.TokenVolume, MountPath: inject.TokenMountPath, ReadOnly: true}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						SecurityContext: agentspec.SecurityContext(),
					}},
					Volumes: []corev1.Volume{{Name: inject.TokenVolume, VolumeSource: corev1.VolumeSource{
						Secret: &corev1.SecretVolumeSource{SecretName: secret, DefaultMode: &mode}}}},
				},
			},
		},
	}
}

func newToken() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(raw)), nil
}
