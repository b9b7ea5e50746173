//go:build integration

package integration

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tetherkube/tether/integration/cluster"
)

// deadPort returns a loopback port nothing listens on.
func deadPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// TestInterceptBadInput: each bad request gets exit code 2 and a message
// that says what is wrong, and leaves the cluster exactly as it was.
func TestInterceptBadInput(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	lonely := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "lonely"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "lonely"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "lonely"}},
				Spec: corev1.PodSpec{SecurityContext: restrictedPodSecurity(), Containers: []corev1.Container{{
					Name: "app", Image: cluster.DemoImage, ImagePullPolicy: corev1.PullNever,
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}, SecurityContext: restrictedContainerSecurity(),
				}}},
			},
		},
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(context.Background(), lonely, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	local := strconv.Itoa(laptop(t))
	dead := strconv.Itoa(deadPort(t))
	kc := "--kubeconfig=" + e.kubeconfig
	ns := "--namespace=" + e.ns

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown workload", []string{"intercept", "deploy/nope", "--port", "http:" + local, kc, ns}, `no deployment named "nope" in namespace ` + e.ns + "; it has: deploy/lonely, deploy/orders"},
		{"unknown namespace", []string{"intercept", "orders", "--port", "http:" + local, kc, "-n", "no-such-ns"}, `namespace "no-such-ns" does not exist`},
		{"kind tether does not change", []string{"intercept", "pod/orders", "--port", "http:" + local, kc, ns}, "tether intercepts deployments and statefulsets"},
		{"no service selects it", []string{"intercept", "lonely", "--port", "http:" + local, kc, ns}, "no Service in namespace " + e.ns + " selects deployment/lonely"},
		{"port name the service lacks", []string{"intercept", "orders", "--port", "web:" + local, kc, ns}, "service orders has no port web; ports: 80/http"},
		{"port number the service lacks", []string{"intercept", "orders", "--port", "81:" + local, kc, ns}, "service orders has no port 81"},
		{"nothing listens locally", []string{"intercept", "orders", "--port", "http:" + dead, kc, ns}, "nothing listens on localhost:" + dead},
		{"named port without local port", []string{"intercept", "orders", "--port", "http", kc, ns}, "write --port http:LOCALPORT"},
		{"local port out of range", []string{"intercept", "orders", "--port", "http:70000", kc, ns}, "local port 70000 is out of range"},
		{"no port flag", []string{"intercept", "orders", kc, ns}, "--port is required"},
		{"negative agent idle time", []string{"intercept", "orders", "--port", "http:" + local, "--agent-idle", "-1s", kc, ns}, "--agent-idle -1s: give a duration of 1s or more"},
		{"agent idle time not a duration", []string{"intercept", "orders", "--port", "http:" + local, "--agent-idle", "soon", kc, ns}, `invalid argument "soon" for "--agent-idle"`},
		{"leave what is not intercepted", []string{"leave", "orders", kc, ns}, "is not intercepted"},
		{"rollback without a journal", []string{"rollback", "orders", kc, ns}, `tether has no journal for "orders"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := e.tether(tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (user error)\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, stderr)
			}
			e.requireRestored(before)
		})
	}
}

// TestInterceptTwiceIsRefused: a second intercept of the same workload is
// refused while the first runs, and changes nothing.
func TestInterceptTwiceIsRefused(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	port := strconv.Itoa(laptop(t))
	e.mustTether("intercept", "orders", "--port", "http:"+port)
	during := e.snapshot()
	_, stderr, code := e.tether("intercept", "orders", "--port", "http:"+port, "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 || !strings.Contains(stderr, "already intercepted") {
		t.Errorf("second intercept: exit %d, stderr %s; want 2 and 'already intercepted'", code, stderr)
	}
	if after := e.snapshot(); after.template.Annotations["tether.dev/agent"] != "true" || len(after.template.Spec.Containers) != len(during.template.Spec.Containers) {
		t.Errorf("the refused intercept changed the workload")
	}
	e.mustTether("rollback", "orders")
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestAgentImageMissingRollsBack: an agent image that cannot be pulled is
// detected from the pods' status during the rollout wait, the workload is
// rolled back automatically, and the reason is shown.
func TestAgentImageMissingRollsBack(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	port := strconv.Itoa(laptop(t))
	_, stderr, code := e.tether("intercept", "orders", "--port", "http:"+port, "--agent-image", "docker.io/tetherkube/tether-agent:no-such-tag",
		"--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 {
		t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"the agent cannot start", "ErrImagePull", "undoing this attempt's changes to deployment/orders"} {
		if !strings.Contains(stderr, want) && !(want == "ErrImagePull" && strings.Contains(stderr, "ImagePullBackOff")) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	e.waitAppRoutes(1)
	e.requireRestored(before)
}

// TestInterceptMissingPermission: a user without the RBAC tether needs is
// told exactly what is missing, and nothing changes.
func TestInterceptMissingPermission(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	before := e.snapshot()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}
	if _, err := e.cs.CoreV1().ServiceAccounts(e.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "configmaps"}, Verbs: []string{"get", "list"}},
		},
	}
	if _, err := e.cs.RbacV1().Roles(e.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "viewer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: e.ns}},
	}
	if _, err := e.cs.RbacV1().RoleBindings(e.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.cs.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, "viewer", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: e.rc.Host, CertificateAuthorityData: e.rc.TLSClientConfig.CAData}
	cfg.AuthInfos["viewer"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["viewer"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "viewer", Namespace: e.ns}
	cfg.CurrentContext = "viewer"
	path := filepath.Join(t.TempDir(), "viewer.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)

	port := strconv.Itoa(laptop(t))
	_, stderr, code := runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir},
		"intercept", "orders", "--port", "http:"+port, "--kubeconfig", path)
	defer runBinary(t, tetherBinary(t), []string{"XDG_RUNTIME_DIR=" + e.runtimeDir}, "quit", "--kubeconfig", path)
	if code != 2 {
		t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"you may not do everything an intercept needs", "update deployments.apps", "create pods/portforward", "create secrets"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	e.requireRestored(before)
}
