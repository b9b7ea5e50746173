package inspect_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// TestTokens: every agent gets a token of its own, in its spec; no Secret
// is made before the token is rotated, and none is shared; StoreToken
// keeps the rotated token in a Secret the pod owns, which the next Ensure
// reads. Before, one token per namespace, in the Secret tether-inspect,
// opened every agent of the namespace for as long as it ran.
func TestTokens(t *testing.T) {
	c := newCluster(t, clusterConfig{pod: testPod()})
	ctx := t.Context()
	tr, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image, Job: agent.JobCapture}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Bootstrap || !cp.Bootstrap || string(tr.Token) == string(cp.Token) || len(tr.Token) < 32 {
		t.Fatalf("two new agents: bootstrap %v/%v, tokens %q and %q; want two different bootstrap tokens", tr.Bootstrap, cp.Bootstrap, tr.Token, cp.Token)
	}
	secrets, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Fatalf("Ensure made Secrets %v; want none until a token is rotated", secrets.Items)
	}

	rotated := []byte("rotated-token-0123456789abcdef")
	if err := inspect.StoreToken(ctx, c, ns, tr, rotated); err != nil {
		t.Fatal(err)
	}
	s, err := c.CoreV1().Secrets(ns).Get(ctx, "tether-inspect.web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: podName, UID: podUID}}
	if diff := cmp.Diff(wantOwner, s.OwnerReferences); diff != "" {
		t.Errorf("owner of the token Secret (-want +got):\n%s", diff)
	}
	if s.Immutable == nil || !*s.Immutable || s.Labels["tether.dev/inspect-token"] != "true" {
		t.Errorf("token Secret: immutable %v, labels %v; want immutable and labelled", s.Immutable, s.Labels)
	}
	again, err := inspect.Ensure(ctx, c, inspect.Request{Namespace: ns, Pod: podName, AgentImage: image}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	want := inspect.Agent{Pod: podName, PodUID: podUID, Container: tr.Container, Port: tr.Port, Token: rotated}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Ensure after the rotation (-want +got):\n%s", diff)
	}
}
