//go:build integration

package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/integration/cluster"
)

// podTemplate is the orders app as a pod template labelled app=name.
func podTemplate(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{SecurityContext: restrictedPodSecurity(), Containers: []corev1.Container{{
			Name: "app", Image: cluster.DemoImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"},
			Env:   []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}, SecurityContext: restrictedContainerSecurity(),
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 2},
		}}},
	}
}

// TestInterceptStatefulSet intercepts sts/db (2 replicas) and rolls it
// back; a bare name that a deployment shares is refused as ambiguous.
func TestInterceptStatefulSet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	replicas := int32(2)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: "db",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: podTemplate("db"),
		},
	}
	if _, err := e.cs.AppsV1().StatefulSets(e.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := e.cs.CoreV1().Services(e.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db-tools"}},
			Template: podTemplate("db-tools"),
		},
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTS := func() {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			s, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, "db", metav1.GetOptions{})
			return err == nil && s.Status.ObservedGeneration >= s.Generation && s.Status.ReadyReplicas == replicas &&
				s.Status.UpdatedReplicas == replicas && s.Status.CurrentRevision == s.Status.UpdateRevision, nil
		})
		if err != nil {
			t.Fatalf("statefulset db not ready: %v", err)
		}
	}
	waitSTS()
	before, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := e.clientPod("client")
	port := strconv.Itoa(laptop(t))

	_, stderr, code := e.tether("intercept", "db", "--port", "http:"+port, "--kubeconfig", e.kubeconfig, "-n", e.ns)
	if code != 2 || !strings.Contains(stderr, "both deploy/db and sts/db exist") {
		t.Errorf("a bare name two workloads share: exit %d, stderr %s", code, stderr)
	}

	out := e.mustTether("intercept", "sts/db", "--port", "http:"+port, "-o", "json")
	if !strings.Contains(out, `"name": "statefulset/db"`) || !strings.Contains(out, "db-0") || !strings.Contains(out, "db-1") {
		t.Errorf("intercept output: %s", out)
	}
	for i := range 10 {
		got, ok := e.exec(client, "/tether-demo", "get", "http://db."+e.ns+".svc.cluster.local/whoami")
		if !ok || !strings.Contains(got, "X-Served-By: laptop") {
			t.Errorf("request %d: %s", i, got)
		}
	}
	e.mustTether("rollback", "sts/db")
	waitSTS()
	after, err := e.cs.AppsV1().StatefulSets(e.ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(before.Spec.Template, after.Spec.Template) {
		t.Errorf("statefulset template not restored")
	}
}
