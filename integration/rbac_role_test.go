//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// documentedRoles reads the Roles out of docs/intercept.md, so the doc and
// this test cannot drift.
func documentedRoles(t *testing.T) map[string]*rbacv1.Role {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "intercept.md"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]*rbacv1.Role{}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(m[1], "kind: Role\n") {
			continue
		}
		r := &rbacv1.Role{}
		if err := yaml.UnmarshalStrict([]byte(m[1]), r); err != nil {
			t.Fatalf("a Role in docs/intercept.md does not parse: %v\n%s", err, m[1])
		}
		roles[r.Name] = r
	}
	return roles
}

// userWithRoles creates ServiceAccount name in the test's namespace, bound
// to roles (created there), and returns a kubeconfig that authenticates as
// it with a token from the TokenRequest API.
func (e *env) userWithRoles(name string, roles ...*rbacv1.Role) string {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.cs.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for _, r := range roles {
		if _, err := e.cs.RbacV1().Roles(e.ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			e.t.Fatalf("create Role %s: %v", r.Name, err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + r.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: r.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: e.ns}},
		}
		if _, err := e.cs.RbacV1().RoleBindings(e.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			e.t.Fatal(err)
		}
	}
	tok, err := e.cs.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: e.rc.Host, CertificateAuthorityData: e.rc.TLSClientConfig.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name, Namespace: e.ns}
	cfg.CurrentContext = name
	path := filepath.Join(e.t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		runBinary(e.t, tetherBinary(e.t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, "quit", "--kubeconfig", path)
	})
	return path
}

// agentImage returns --agent-image $TETHER_AGENT_IMAGE for the commands
// that add an agent, when set: a branch whose tunnel protocol differs from
// the image the cluster was built with tests against its own agent image.
func agentImage(args ...string) []string {
	if im := os.Getenv("TETHER_AGENT_IMAGE"); im != "" {
		return append(args, "--agent-image", im)
	}
	return args
}

// TestDocumentedRoleWorks: a user bound to exactly the Roles in
// docs/intercept.md intercepts, leaves, records, reads the recording, rolls
// back and traces the demo app. The Role once lacked list on
// endpointslices: every intercept changed the template, then failed.
func TestDocumentedRoleWorks(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	before := e.snapshot()
	roles := documentedRoles(t)
	if roles["tether-user"] == nil || roles["tether-inspect"] == nil || roles["tether-run"] == nil {
		t.Fatalf("docs/intercept.md lacks the Roles tether-user, tether-inspect and tether-run: %v", roles)
	}
	kc := e.userWithRoles("dev", roles["tether-user"], roles["tether-inspect"], roles["tether-run"])
	as := func(args ...string) string {
		t.Helper()
		if args[0] != "run" { // run's flags go before its "--"
			args = append(args, "--kubeconfig", kc, "-n", e.ns)
		}
		stdout, stderr, code := runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, args...)
		if code != 0 {
			t.Fatalf("as the documented Role, tether %s exited %d:\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}

	if out := as("connect"); strings.Contains(out, "Missing") {
		t.Errorf("connect says something is missing:\n%s", out)
	}
	as(agentImage("intercept", "orders", "--port", "http:"+strconv.Itoa(laptop(t)))...)
	e.requireAll(client, "laptop", 5)
	as("leave", "orders")
	e.requireAll(client, "app", 3)
	as(agentImage("record", "orders", "--port", "http")...)
	e.requireAll(client, "app", 2)
	if out := as("requests", "list", "orders"); !strings.Contains(out, "/whoami") {
		t.Errorf("requests list does not show the recorded /whoami:\n%s", out)
	}
	if out := as(agentImage("trace", "pod/"+client, "svc/orders")...); !strings.Contains(out, "path healthy") {
		t.Errorf("trace as the documented Role:\n%s", out)
	}
	// tether run with no workload: the gateway, added and removed.
	run := agentImage("run", "--kubeconfig", kc, "-n", e.ns, "--network", "proxy")
	run = append(run, "--", "curl", "-sS", "-m", "20", "--fail", "http://orders/whoami")
	if out := as(run...); !strings.Contains(out, `"name"`) {
		t.Errorf("run through the gateway as the documented Role: %s", out)
	}
	as("rollback", "deployment/tether-gateway")
	if _, err := e.cs.AppsV1().Deployments(e.ns).Get(context.Background(), "tether-gateway", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the gateway after its rollback: %v, want not found", err)
	}
	as("rollback", "orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}
