//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tetherkube/tether/integration/cluster"
)

// envPod creates the objects and the pod of TestEnvMatchesProcess and
// returns the pod once it runs.
func (e *env) envPod() *corev1.Pod {
	e.t.Helper()
	ctx := context.Background()
	yes, uid := true, int64(1234)
	must := func(err error) {
		e.t.Helper()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	_, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"DB_HOST": "db.shop", "LEVEL": "info", "1bad": "x", "dotted.key": "ok", "config.yaml": "a: 1\nb: \"two\"\n",
			"MULTI": "line1\nline2 'q' \"d\" $x"}}, metav1.CreateOptions{})
	must(err)
	_, err = e.cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		StringData: map[string]string{"token": "s3cr'et", "USER": "bob"}}, metav1.CreateOptions{})
	must(err)
	_, err = e.cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pay-api"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "none"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80}, {Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}}}}, metav1.CreateOptions{})
	must(err)
	_, err = e.cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "none"}, Ports: []corev1.ServicePort{{Port: 80}}}},
		metav1.CreateOptions{})
	must(err)
	ref := func(kind, name, key string, optional bool) *corev1.EnvVarSource {
		o := &optional
		if kind == "cm" {
			return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: o}}
		}
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: o}}
	}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	res := func(r, divisor string) *corev1.EnvVarSource {
		s := &corev1.ResourceFieldSelector{Resource: r}
		if divisor != "" {
			s.Divisor = resource.MustParse(divisor)
		}
		return &corev1.EnvVarSource{ResourceFieldRef: s}
	}
	sc := restrictedContainerSecurity()
	psc := restrictedPodSecurity()
	psc.RunAsUser = &uid
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "envpod", Labels: map[string]string{"app": "envpod", "tier": "back"}, Annotations: map[string]string{"note": "hi"}},
		Spec: corev1.PodSpec{
			SecurityContext: psc,
			Containers: []corev1.Container{{
				Name: "app", Image: cluster.DemoImage, ImagePullPolicy: corev1.PullNever, Args: []string{"serve", ":8080"},
				SecurityContext: sc,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
				EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}},
					{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Optional: &yes}},
				},
				Env: []corev1.EnvVar{
					{Name: "URL", Value: "pg://$(DB_HOST):$(PORT)/$$(LEVEL)/$(LEVEL)/$(NOPE)"},
					{Name: "PORT", Value: "5432"},
					{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(PAY_API_SERVICE_PORT_HTTP)"},
					{Name: "LEVEL", Value: "debug"},
					{Name: "EMPTY", Value: ""},
					{Name: "TOKEN", ValueFrom: ref("secret", "creds", "token", false)},
					{Name: "OPT_MISSING", ValueFrom: ref("cm", "missing", "k", true)},
					{Name: "OPT_KEY", ValueFrom: ref("secret", "creds", "nokey", true)},
					{Name: "HOST_FROM_CM", ValueFrom: ref("cm", "app", "DB_HOST", false)},
					{Name: "POD", ValueFrom: field("metadata.name")},
					{Name: "NS", ValueFrom: field("metadata.namespace")},
					{Name: "UID", ValueFrom: field("metadata.uid")},
					{Name: "TIER", ValueFrom: field("metadata.labels['tier']")},
					{Name: "NOTE", ValueFrom: field("metadata.annotations['note']")},
					{Name: "NODE", ValueFrom: field("spec.nodeName")},
					{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
					{Name: "HOST_IP", ValueFrom: field("status.hostIP")},
					{Name: "POD_IP", ValueFrom: field("status.podIP")},
					{Name: "POD_IPS", ValueFrom: field("status.podIPs")},
					{Name: "MEM_MI", ValueFrom: res("limits.memory", "1Mi")},
					{Name: "MEM_REQ", ValueFrom: res("requests.memory", "")},
					{Name: "CPU_REQ_M", ValueFrom: res("requests.cpu", "1m")},
					{Name: "CPU_LIMIT", ValueFrom: res("limits.cpu", "")}, // none set: the node's allocatable
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "cfg", MountPath: "/etc/app"},
					{Name: "creds", MountPath: "/etc/creds"},
					{Name: "podinfo", MountPath: "/etc/podinfo"},
					{Name: "scratch", MountPath: "/scratch"},
					{Name: "cfg", MountPath: "/etc/single.yaml", SubPath: "config.yaml"}, // one key as a file
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds",
					Items: []corev1.KeyToPath{{Key: "token", Path: "nested/token"}, {Key: "USER", Path: "user"}}}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	_, err = e.cs.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
	must(err)
	var running *corev1.Pod
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(wctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, "envpod", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		running = p
		return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready, nil
	})
	if err != nil {
		e.t.Fatalf("pod envpod not ready: %v", err)
	}
	return running
}

func (e *env) wantEphemeral(pod string, n int, when string) {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	if got := len(p.Spec.EphemeralContainers); got != n {
		e.t.Errorf("%s: pod %s has %d ephemeral containers, want %d", when, pod, got, n)
	}
}

// processOf finds, on the node (the tests run on it, as root), the main
// process of the pod's only container: the lowest PID whose cgroup names
// the container's ID.
func processOf(t *testing.T, pod *corev1.Pod) int {
	t.Helper()
	_, id, ok := strings.Cut(pod.Status.ContainerStatuses[0].ContainerID, "://")
	if !ok {
		t.Fatalf("container ID %q", pod.Status.ContainerStatuses[0].ContainerID)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for _, en := range entries {
		var pid int
		if _, err := fmt.Sscanf(en.Name(), "%d", &pid); err != nil || (best != 0 && pid >= best) {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cgroup"))
		if err == nil && strings.Contains(string(cg), id) {
			best = pid
		}
	}
	if best == 0 {
		t.Fatalf("no process of container %s on this node", id)
	}
	return best
}

// processEnv is the oracle: the app process's environment as the kernel
// holds it.
func processEnv(t *testing.T, pod *corev1.Pod) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", processOf(t, pod)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := out[k]; !dup {
			out[k] = v
		}
	}
	return out
}

// podFiles reads the files under dir as the container sees them (through
// /proc/PID/root on the node), skipping the kubelet's ..data entries,
// keyed by their path under dir.
func podFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var walk func(rel string)
	walk = func(rel string) {
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if strings.HasPrefix(en.Name(), "..") {
				continue
			}
			p := filepath.Join(rel, en.Name())
			fi, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() {
				walk(p)
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			out[p] = b
		}
	}
	walk("")
	return out
}

func jsonObject(t *testing.T, s string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, s)
	}
	return m
}

func wantFileMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
	}
}
