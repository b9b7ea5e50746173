package access

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	authv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

// allows is Kubernetes RBAC's rule match: verb, group and resource (with
// "/subresource") listed or "*", and resourceNames empty or naming the
// object.
func allows(rules []rbacv1.PolicyRule, a *authv1.ResourceAttributes) bool {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	has := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if has(r.Verbs, a.Verb) && has(r.APIGroups, a.Group) && has(r.Resources, res) &&
			(len(r.ResourceNames) == 0 || (a.Name != "" && slices.Contains(r.ResourceNames, a.Name))) {
			return true
		}
	}
	return false
}

// clientFor answers SelfSubjectAccessReviews as a user bound to rules.
func clientFor(rules []rbacv1.PolicyRule) *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		r := action.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		r.Status.Allowed = allows(rules, r.Spec.ResourceAttributes)
		return true, r, nil
	})
	return cs
}

// documentedRoles reads the Roles out of docs/intercept.md, by name.
func documentedRoles(t *testing.T) map[string]rbacv1.Role {
	t.Helper()
	return rolesIn(t, "intercept.md")
}

// rolesIn reads the Roles out of docs/FILE, by name.
func rolesIn(t *testing.T, file string) map[string]rbacv1.Role {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", file))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]rbacv1.Role{}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(m[1], "kind: Role\n") {
			continue
		}
		var r rbacv1.Role
		if err := yaml.UnmarshalStrict([]byte(m[1]), &r); err != nil {
			t.Fatalf("a Role in docs/%s does not parse: %v\n%s", file, err, m[1])
		}
		roles[r.Name] = r
	}
	return roles
}

var orders = Objects{Kind: "Deployment", Workload: "orders", Secret: "tether-agent-deployment-orders", Journal: "tether-journal-deployment-orders",
	JournalKey: "tether-journal-key-deployment-orders"}

// TestDocumentedRolesSuffice: the Roles in docs/intercept.md grant every
// feature what its check asks for (the documented Role once lacked list
// on endpointslices: every intercept changed the template, then failed).
func TestDocumentedRolesSuffice(t *testing.T) {
	roles := documentedRoles(t)
	tests := []struct {
		role     string
		features []Feature
	}{
		{"tether-user", []Feature{Intercept, Record, Requests, Rollback, RollAll}},
		{"tether-inspect", []Feature{Inspect}},
		{"tether-env", []Feature{EnvSpec, Env}},
	}
	for _, tt := range tests {
		role, ok := roles[tt.role]
		if !ok {
			t.Fatalf("docs/intercept.md has no Role %s; it has %v", tt.role, roles)
		}
		for _, f := range tt.features {
			missing, err := Missing(context.Background(), clientFor(role.Rules), "ns", Rules(f, orders))
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) > 0 {
				t.Errorf("Role %s lacks what %s needs:\n%s", tt.role, f, Describe(missing))
			}
		}
	}
}

// TestInterceptNeedsEndpointSlices: the intercept waits on the Service's
// EndpointSlices, so its check must ask for them.
func TestInterceptNeedsEndpointSlices(t *testing.T) {
	for _, f := range []Feature{Intercept, Record} {
		if !slices.ContainsFunc(Rules(f, orders), func(r Rule) bool {
			return r.Verb == "list" && r.Group == "discovery.k8s.io" && r.Resource == "endpointslices"
		}) {
			t.Errorf("%s does not check list endpointslices", f)
		}
	}
}

// TestMissingPerNamedObject: a Role that grants the token Secret by name
// passes; the check names the Secret instead of asking for every Secret of
// the namespace, and one for another workload's Secret does not pass.
func TestMissingPerNamedObject(t *testing.T) {
	base := documentedRoles(t)["tether-user"].Rules
	var rules []rbacv1.PolicyRule
	for _, r := range base {
		if !slices.Contains(r.Resources, "secrets") {
			rules = append(rules, r)
		}
	}
	rules = append(rules,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "delete"},
			ResourceNames: []string{"tether-agent-deployment-orders", "tether-journal-key-deployment-orders"}})

	missing, err := Missing(context.Background(), clientFor(rules), "ns", Rules(Intercept, orders))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("a Role granting the one token Secret is refused:\n%s", Describe(missing))
	}

	other := orders
	other.Workload, other.Secret, other.JournalKey = "billing", "tether-agent-deployment-billing", "tether-journal-key-deployment-billing"
	missing, err = Missing(context.Background(), clientFor(rules), "ns", Rules(Intercept, other))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range missing {
		got = append(got, r.String())
	}
	want := []string{`get secrets "tether-agent-deployment-billing"`, `delete secrets "tether-agent-deployment-billing"`,
		`get secrets "tether-journal-key-deployment-billing"`, `delete secrets "tether-journal-key-deployment-billing"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("missing for deployment/billing (-want +got):\n%s", diff)
	}
}

// TestMissingUnknownObjects: without names (tether connect) the per-object
// rules are not demanded on every object.
func TestMissingUnknownObjects(t *testing.T) {
	rules := documentedRoles(t)["tether-user"].Rules
	rules = append(rules, documentedRoles(t)["tether-inspect"].Rules...)
	rules = append(rules, documentedRoles(t)["tether-run"].Rules...)
	missing, err := Missing(context.Background(), clientFor(rules), "ns", Needed(Objects{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("the documented Roles miss, for connect:\n%s", Describe(missing))
	}
	missing, err = Missing(context.Background(), clientFor(nil), "ns", Needed(Objects{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range missing {
		if r.PerObject {
			t.Errorf("%s checked without a name", r)
		}
	}
	if len(missing) == 0 {
		t.Error("a user with no permission misses nothing")
	}
}

// TestLeastPerFeature: features ask only for what they use.
func TestLeastPerFeature(t *testing.T) {
	has := func(f Feature, verb, res, sub string) bool {
		return slices.ContainsFunc(Rules(f, orders), func(r Rule) bool { return r.Verb == verb && r.Resource == res && r.Subresource == sub })
	}
	tests := []struct {
		f                   Feature
		verb, resource, sub string
		want                bool
	}{
		{Record, "create", "pods", "portforward", false}, // recording opens no tunnel
		{Intercept, "create", "pods", "portforward", true},
		{Intercept, "get", "pods", "portforward", true}, // the WebSocket upgrade is a GET
		{Requests, "get", "pods", "portforward", true},
		{Rollback, "create", "secrets", "", false},
		{Rollback, "list", "configmaps", "", false},
		{RollAll, "list", "configmaps", "", true},
		{Requests, "update", "deployments", "", false},
		{Inspect, "update", "pods", "ephemeralcontainers", true},
		{Inspect, "update", "deployments", "", false},
	}
	for _, tt := range tests {
		if got := has(tt.f, tt.verb, tt.resource, tt.sub); got != tt.want {
			t.Errorf("%s asks for %s %s/%s: %v, want %v", tt.f, tt.verb, tt.resource, tt.sub, got, tt.want)
		}
	}
}

// TestSessionRoleSuffices: the tether-session Role of docs/session.md
// grants each session subcommand what its check asks for, with and without
// --include, and a Role without Secrets does not.
func TestSessionRoleSuffices(t *testing.T) {
	role, ok := rolesIn(t, "session.md")["tether-session"]
	if !ok {
		t.Fatal("docs/session.md has no tether-session Role")
	}
	chunks := []string{"tether-session-0", "tether-session-1"}
	for _, o := range []Objects{
		{SessionChunks: chunks},
		{SessionChunks: chunks, Include: []SessionObject{{"apps", "deployments", "orders"}, {"", "configmaps", "orders-config"}}},
	} {
		for _, f := range []Feature{SessionStart, SessionDiff, SessionRollback, SessionEnd} {
			missing, err := Missing(context.Background(), clientFor(role.Rules), "ns", Rules(f, o))
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) > 0 {
				t.Errorf("%s (include %v): the documented Role misses\n%s", f, o.Include, Describe(missing))
			}
		}
	}
	var noSecrets []rbacv1.PolicyRule
	for _, r := range role.Rules {
		r = *r.DeepCopy()
		r.Resources = slices.DeleteFunc(r.Resources, func(s string) bool { return s == "secrets" })
		noSecrets = append(noSecrets, r)
	}
	missing, err := Missing(context.Background(), clientFor(noSecrets), "ns", Rules(SessionDiff, Objects{SessionChunks: chunks}))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) == 0 {
		t.Error("session diff needs no right on Secrets: the snapshot holds them")
	}
}
