package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// envCluster is fakeCluster with a running pod orders-1 whose container
// app takes variables from ConfigMap app and Secret creds.
func envCluster(t *testing.T, deny access.Rule) (*Daemon, *fake.Clientset) {
	t.Helper()
	d, cs := fakeCluster(t, deny)
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop", Labels: map[string]string{"app": "orders"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "orders",
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
			Env: []corev1.EnvVar{
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}},
				{Name: "URL", Value: "http://$(HOST)"},
			}}, {Name: "side", Image: "side"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"HOST": "db"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data: map[string][]byte{"token": []byte("t0k")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
	return d, cs
}

func TestEnvSpec(t *testing.T) {
	d, cs := envCluster(t, access.Rule{})
	for _, target := range []string{"orders", "pod/orders-1", "deploy/orders"} {
		res, err := d.Env(context.Background(), daemon.EnvRequest{Namespace: "shop", Target: target, Source: daemon.EnvSpec}, func(string) {})
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		want := []daemon.EnvVar{
			{Name: "HOST", Value: "db", Source: "configmap/app key HOST"},
			{Name: "TOKEN", Value: "t0k", Source: "secret/creds key token", Secret: true},
			{Name: "URL", Value: "http://db", Source: "env"},
		}
		if diff := cmp.Diff(want, res.Vars); diff != "" {
			t.Errorf("%s: vars (-want +got):\n%s", target, diff)
		}
		if res.Pod != "orders-1" || res.Container != "app" || res.Source != daemon.EnvSpec {
			t.Errorf("%s: pod %s container %s source %s", target, res.Pod, res.Container, res.Source)
		}
		if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[len(res.Warnings)-1], "the image's ENV") {
			t.Errorf("%s: no warning that the image's ENV is missing: %q", target, res.Warnings)
		}
	}
	if w := writes(cs); len(w) > 0 {
		t.Errorf("--source spec changed the cluster: %v", w)
	}
}

func TestEnvBadInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  daemon.EnvRequest
		want string
	}{
		{"unknown container", daemon.EnvRequest{Target: "pod/orders-1", Container: "nope"}, `pod orders-1 has no container "nope"; containers: app, side`},
		{"unknown pod", daemon.EnvRequest{Target: "pod/nope"}, `no pod "nope" in namespace shop`},
		{"unknown workload", daemon.EnvRequest{Target: "deploy/nope"}, `no deployment named "nope"`},
		{"unknown source", daemon.EnvRequest{Target: "pod/orders-1", Source: "image"}, `source "image": write auto, process or spec`},
		{"files from the spec", daemon.EnvRequest{Target: "pod/orders-1", Source: daemon.EnvSpec, Files: true}, "--files reads the volumes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, cs := envCluster(t, access.Rule{})
			tt.req.Namespace = "shop"
			_, err := d.Env(context.Background(), tt.req, func(string) {})
			if !errors.Is(err, errdefs.ErrUser) && !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("got %v, want a user error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if w := writes(cs); len(w) > 0 {
				t.Errorf("changed the cluster: %v", w)
			}
		})
	}
}

// TestEnvPermissions: a Secret the environment names and the user may not
// read refuses, naming it; without the agent's permission, auto reads the
// spec and says why, process refuses.
func TestEnvPermissions(t *testing.T) {
	ctx := context.Background()
	d, cs := envCluster(t, access.Rule{Verb: "get", Resource: "secrets", Name: "creds"})
	_, err := d.Env(ctx, daemon.EnvRequest{Namespace: "shop", Target: "pod/orders-1", Source: daemon.EnvSpec}, func(string) {})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), `get secrets "creds"`) || !strings.Contains(err.Error(), "tether-env Role") {
		t.Errorf("secret not readable: got %v", err)
	}

	eph := access.Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers"}
	d, cs = envCluster(t, eph)
	res, err := d.Env(ctx, daemon.EnvRequest{Namespace: "shop", Target: "pod/orders-1", Source: daemon.EnvAuto}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != daemon.EnvSpec || !strings.Contains(strings.Join(res.Warnings, "\n"), "read from the spec, not the process") {
		t.Errorf("auto without the agent's permission: source %s, warnings %q", res.Source, res.Warnings)
	}
	_, err = d.Env(ctx, daemon.EnvRequest{Namespace: "shop", Target: "pod/orders-1", Source: daemon.EnvProcess}, func(string) {})
	if !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), eph.String()) {
		t.Errorf("process without the agent's permission: got %v", err)
	}
	if w := writes(cs); len(w) > 0 {
		t.Errorf("changed the cluster: %v", w)
	}
}
