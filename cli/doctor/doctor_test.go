package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/agentspec"
)

func TestNewCmdDoctor(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	var got *DoctorOptions
	runF := func(_ context.Context, o *DoctorOptions) error { got = o; return nil }
	if err := cmdtest.Exec(NewCmdDoctor(cmdtest.Factory(t, streams), runF), "-o", "json", "--skip-image", "--agent-image", "example.com/agent:1"); err != nil {
		t.Fatal(err)
	}
	want := DoctorOptions{Output: "json", AgentImage: "example.com/agent:1", SkipImage: true, ImageTimeout: 60 * time.Second, CheckTimeout: 10 * time.Second,
		Kube: got.Kube, GOOS: got.GOOS}
	if diff := cmp.Diff(want, *got, cmdtest.IgnoreDeps, cmp.AllowUnexported(DoctorOptions{}), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".client" }, cmp.Ignore())); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if got.Kube.Namespace != "shop" || got.Kube.Context != "test" {
		t.Errorf("target %+v, want context test, namespace shop", got.Kube)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, "unknown command"},
		{[]string{"-o", "xml"}, `unknown output format "xml"`},
		{[]string{"--agent-image", ""}, "--agent-image must not be empty"},
		{[]string{"--agent-image", "a b"}, "has no spaces"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := cmdtest.Exec(NewCmdDoctor(cmdtest.Factory(t, streams), runF), tc.args...)
			cmdtest.WantError(t, err, cmdutil.ExitUser, tc.want)
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    DoctorOptions
		want string
	}{
		{"defaults", DoctorOptions{AgentImage: "docker.io/tetherkube/tether-agent:dev"}, ""},
		{"yaml", DoctorOptions{AgentImage: "x", Output: "yaml"}, ""},
		{"no image, skipped", DoctorOptions{SkipImage: true}, ""},
		{"no image", DoctorOptions{}, "--agent-image must not be empty"},
		{"bad output", DoctorOptions{AgentImage: "x", Output: "table"}, "unknown output format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			cmdtest.WantError(t, err, cmdutil.ExitUser, tc.want)
		})
	}
}

func TestRunAllOK(t *testing.T) {
	c := newCluster(t, namespace(map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}))
	o, out := c.options()
	got, err := run(t, o, out)
	cmdtest.WantError(t, err, cmdutil.ExitOK, "")
	// The cluster, ephemeral containers, one per feature, pod security,
	// image, port-forward, three leftovers, this machine.
	if n := 9 + len(access.Features); len(got) != n {
		t.Errorf("%d checks, want %d: %v", len(got), n, got)
	}
	for name, r := range got {
		if r.Status != StatusOK {
			t.Errorf("%s: %s (%s)", name, r.Status, r.Detail)
		}
	}
	want(t, got, "port-forward", StatusOK, "tunnel handshake with agent")
	want(t, got, "kube context", StatusOK, "v1.32.0+k3s1")
	c.wantNoTestPod(t)
}

func TestRunTable(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	out := &strings.Builder{}
	streams.Out = out
	c := newCluster(t, namespace(nil))
	o, _ := c.options()
	o.IOStreams, o.Output, o.SkipImage = streams, "", true
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[0], "FIX") || len(lines) != 10+len(access.Features) {
		t.Errorf("table:\n%s", out)
	}
	if !strings.Contains(out.String(), "agent image") || !strings.Contains(out.String(), "skipped") {
		t.Errorf("table lacks the skipped image check:\n%s", out)
	}
}

func TestRunPermissionsMissing(t *testing.T) {
	c := newCluster(t, namespace(nil))
	c.denied["create secrets"] = true
	c.denied["get pods/portforward"] = true
	o, out := c.options()
	got, err := run(t, o, out)
	cmdtest.WantError(t, err, cmdutil.ExitFailed, "permissions: intercept")
	want(t, got, "permissions: intercept", StatusFail, "2 of 15 missing", "create secrets, get pods/portforward", "the tether-user Role in docs/intercept.md")
	want(t, got, "permissions: trace, capture and dns", StatusFail, "create secrets", "the tether-inspect Role")
	want(t, got, "permissions: run (no workload: the gateway)", StatusFail, "the tether-run Role")
	want(t, got, "permissions: record", StatusFail, "create secrets")
	if strings.Contains(got["permissions: record"].Detail, "portforward") {
		t.Errorf("record does not need port-forward: %s", got["permissions: record"].Detail)
	}
	want(t, got, "permissions: env --source spec", StatusOK)
	want(t, got, "permissions: rollback", StatusOK)
}

func TestRunImage(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(*cluster, *DoctorOptions)
		code       int
		image, pf  Status
		imageSays  []string
		pfSays     []string
		wantNoPods bool
	}{
		{name: "pull fails", setup: func(c *cluster, _ *DoctorOptions) { c.waiting = "ImagePullBackOff" },
			code: cmdutil.ExitFailed, image: StatusFail, pf: StatusSkipped, imageSays: []string{"cannot pull", "ImagePullBackOff", "make agent-image", "k3s ctr images import"}},
		{name: "never starts", setup: func(c *cluster, o *DoctorOptions) {
			c.waiting = "ContainerCreating"
			o.ImageTimeout, o.progressEvery = 600*time.Millisecond, 100*time.Millisecond
		},
			code: cmdutil.ExitFailed, image: StatusFail, pf: StatusSkipped, imageSays: []string{"did not start within", "ContainerCreating"}},
		{name: "may not create pods", setup: func(c *cluster, _ *DoctorOptions) { c.denied["create pods"] = true },
			code: cmdutil.ExitFailed /* intercept's permissions do not fail on it, the test pod's do not either */, image: StatusWarn, pf: StatusSkipped, imageSays: []string{"not checked", "create pods", "tether-doctor"}},
		{name: "skip", setup: func(_ *cluster, o *DoctorOptions) { o.SkipImage = true },
			code: cmdutil.ExitOK, image: StatusSkipped, pf: StatusSkipped},
		{name: "port-forward refused", setup: func(c *cluster, _ *DoctorOptions) { c.dialErr = errors.New("upgrade request required") },
			code: cmdutil.ExitFailed, image: StatusOK, pf: StatusFail, pfSays: []string{"port-forward to pod", "upgrade request required", "kubectl port-forward"}},
		{name: "handshake refused", setup: func(c *cluster, _ *DoctorOptions) { c.agentToken = strings.Repeat("ab", 32) },
			code: cmdutil.ExitFailed, image: StatusOK, pf: StatusFail, pfSays: []string{"handshake with its agent failed", "agent image of this tether's version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, namespace(nil))
			o, out := c.options()
			o.CheckTimeout = 2 * time.Second
			tc.setup(c, o)
			progress := &strings.Builder{}
			o.ErrOut = progress
			got, err := run(t, o, out)
			if tc.name == "never starts" && !strings.Contains(progress.String(), "doctor: waiting for test pod tether-doctor-") {
				t.Errorf("no progress on stderr while the pod did not start: %q", progress)
			}
			if tc.name == "may not create pods" {
				// the image check only warns: create pods is no feature's need
				tc.code = cmdutil.ExitOK
			}
			cmdtest.WantError(t, err, tc.code, "")
			want(t, got, "agent image", tc.image, tc.imageSays...)
			want(t, got, "port-forward", tc.pf, tc.pfSays...)
			c.wantNoTestPod(t)
		})
	}
}

func TestRunContext(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		c := newCluster(t, namespace(nil))
		c.cs.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("dial tcp 127.0.0.1:1: connection refused")
		})
		o, out := c.options()
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitFailed, "kube context")
		want(t, got, "kube context", StatusFail, "does not answer", "connection refused", "--context")
		want(t, got, "agent image", StatusSkipped, "does not answer")
		want(t, got, "run on this machine", StatusOK)
		c.wantNoTestPod(t)
	})
	t.Run("credentials refused", func(t *testing.T) {
		c := newCluster(t, namespace(nil))
		c.cs.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewUnauthorized("Unauthorized")
		})
		o, out := c.options()
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitFailed, "kube context")
		want(t, got, "kube context", StatusFail, "refuses your credentials", "log in again")
		want(t, got, "permissions", StatusSkipped)
	})
	t.Run("too old", func(t *testing.T) {
		c := newCluster(t, namespace(nil))
		c.cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: "24+", GitVersion: "v1.24.17-gke.1"}
		c.cs.Discovery().(*fakediscovery.FakeDiscovery).Resources[0].APIResources = []metav1.APIResource{{Name: "pods"}}
		o, out := c.options()
		o.SkipImage = true
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitFailed, "kube context, ephemeral containers")
		want(t, got, "kube context", StatusFail, "v1.24.17-gke.1", "1.25 and later")
		want(t, got, "ephemeral containers", StatusFail, "does not serve pods/ephemeralcontainers", "intercept and record work")
	})
}

func TestRunPodSecurity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		status Status
		says   []string
	}{
		{"none", nil, StatusOK, []string{"enforce=(none) allows every tether agent (the API server accepts a dry run of each)"}},
		{"privileged", map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}, StatusOK, []string{"allows every tether agent"}},
		{"baseline warns restricted", map[string]string{"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"}, StatusOK,
			[]string{"allows every tether agent", "warn=restricted level only reports (does not block) capture"}},
		{"restricted", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}, StatusWarn,
			[]string{"enforce=restricted blocks capture", "runs as root", "the API server refuses a dry run of it: violates PodSecurity", "every other feature works", "enforce=baseline --overwrite"}},
		{"not a level", map[string]string{"pod-security.kubernetes.io/enforce": "strict"}, StatusWarn, []string{"is not a Pod Security level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, namespace(tc.labels))
			o, out := c.options()
			o.SkipImage = true
			got, err := run(t, o, out)
			cmdtest.WantError(t, err, cmdutil.ExitOK, "")
			want(t, got, "pod security", tc.status, tc.says...)
			if strings.Contains(got["pod security"].Detail, "blocks intercept") {
				t.Errorf("intercept's sidecar passes restricted: %s", got["pod security"].Detail)
			}
		})
	}
	t.Run("the cluster's default refuses root", func(t *testing.T) {
		c := newCluster(t, namespace(nil))
		c.refuse = func(p *corev1.Pod) error {
			if sc := p.Spec.Containers[0].SecurityContext; sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				return apierrors.NewForbidden(corev1.Resource("pods"), p.Name, errors.New(`violates PodSecurity "restricted:latest": runAsUser=0`))
			}
			return nil
		}
		o, out := c.options()
		o.SkipImage = true
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitOK, "")
		want(t, got, "pod security", StatusWarn, "enforce=(none) blocks capture", `refuses a dry run of it: violates PodSecurity "restricted:latest": runAsUser=0`)
		c.wantNoTestPod(t)
	})
	t.Run("labels unreadable, no dry run", func(t *testing.T) {
		c := newCluster(t, namespace(nil))
		c.denied["create pods"] = true
		c.cs.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(corev1.Resource("namespaces"), "shop", errors.New("no"))
		})
		o, out := c.options()
		o.SkipImage = true
		got, _ := run(t, o, out)
		want(t, got, "pod security", StatusWarn, "you may not read its labels", "level is unknown", "kubectl get namespace shop --show-labels")
	})
	t.Run("labels unreadable, the dry run tells", func(t *testing.T) {
		c := newCluster(t, namespace(map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}))
		c.cs.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(corev1.Resource("namespaces"), "shop", errors.New("no"))
		})
		o, out := c.options()
		o.SkipImage = true
		got, _ := run(t, o, out)
		want(t, got, "pod security", StatusWarn, "you may not read its labels", "blocks capture", "violates PodSecurity")
	})
	t.Run("may not read the namespace", func(t *testing.T) {
		c := newCluster(t) // no namespace object: NotFound
		o, out := c.options()
		o.SkipImage = true
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitFailed, "pod security")
		want(t, got, "pod security", StatusFail, "does not exist", "-n")
	})
}

func TestLevelNeeded(t *testing.T) {
	yes, no, root := true, false, int64(0)
	for _, tc := range []struct {
		name string
		sc   *corev1.SecurityContext
		want string
	}{
		{"agent", agentspec.SecurityContext(), levelRestricted},
		{"capture's agent", agentspec.RootSecurityContext(), levelBaseline},
		{"nothing set", nil, levelBaseline},
		{"adds NET_RAW", &corev1.SecurityContext{RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}, levelPrivileged},
		{"adds NET_BIND_SERVICE", &corev1.SecurityContext{RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}, levelRestricted},
		{"privileged", &corev1.SecurityContext{Privileged: &yes}, levelPrivileged},
		{"root with nonroot set", &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}, levelBaseline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := levelNeeded(tc.sc); got != tc.want {
				t.Errorf("level %s (%v), want %s", got, why, tc.want)
			}
		})
	}
}

func TestRunLeftovers(t *testing.T) {
	agentTemplate := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{agentspec.AgentAnnotation: "true"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app"}, {Name: agentspec.Container}},
			Volumes:    []corev1.Volume{{Name: "data"}, {Name: agentspec.TokenVolume}},
		},
	}
	journal := func(kind, name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tether-journal-" + strings.ToLower(kind) + "-" + name, Namespace: "shop",
			Labels: map[string]string{agentspec.LabelJournal: "true", agentspec.LabelWorkloadKind: kind, agentspec.LabelWorkloadName: name}}}
	}
	objects := []runtime.Object{
		namespace(nil),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Template: agentTemplate}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "payments", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Template: agentTemplate}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db"}}}}}},
		journal("Deployment", "orders"),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tether-doctor-old", Namespace: "shop", Labels: map[string]string{agentspec.LabelDoctor: "true"},
			CreationTimestamp: metav1.NewTime(time.Now().Add(-10 * time.Minute))}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tether-doctor-running", Namespace: "shop", Labels: map[string]string{agentspec.LabelDoctor: "true"},
			CreationTimestamp: metav1.NewTime(time.Now())}},
	}

	t.Run("no daemon", func(t *testing.T) {
		c := newCluster(t, objects...)
		o, out := c.options()
		o.SkipImage = true
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitOK, "")
		want(t, got, "leftovers: journals", StatusWarn, "1 journals", "deployment/orders", "no tether daemon runs", "tether rollback --all -n shop")
		want(t, got, "leftovers: agents", StatusWarn, "deployment/payments run tether's agent and have no journal",
			`kubectl -n shop patch deployment payments --type=json -p '[{"op":"remove","path":"/spec/template/spec/containers/1"},{"op":"remove","path":"/spec/template/spec/volumes/1"},{"op":"remove","path":"/spec/template/metadata/annotations/tether.dev~1agent"}]'`)
		if strings.Contains(got["leftovers: agents"].Detail, "orders") {
			t.Errorf("orders has a journal: %s", got["leftovers: agents"].Detail)
		}
		want(t, got, "leftovers: test pods", StatusOK, "deleted 1 test pods", "tether-doctor-old")
		pods, _ := c.cs.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{})
		if len(pods.Items) != 1 || pods.Items[0].Name != "tether-doctor-running" {
			t.Errorf("pods left: %v, want only a running doctor's", pods.Items)
		}
	})
	t.Run("a daemon runs", func(t *testing.T) {
		c := newCluster(t, objects...)
		o, out := c.options()
		o.SkipImage = true
		o.RunningDaemon = cmdtest.ServeDaemon(t, &cmdtest.FakeService{StatusFunc: func(context.Context) (daemon.Status, error) { return daemon.Status{PID: 42}, nil }})
		got, err := run(t, o, out)
		cmdtest.WantError(t, err, cmdutil.ExitOK, "")
		want(t, got, "leftovers: journals", StatusOK, "a daemon runs for context test")
	})
	t.Run("the gateway without a journal", func(t *testing.T) {
		gw := agentTemplate.DeepCopy()
		gw.Labels = map[string]string{agentspec.LabelGateway: "true"}
		c := newCluster(t, namespace(nil), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "tether-gateway", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Template: *gw}})
		o, out := c.options()
		o.SkipImage = true
		got, _ := run(t, o, out)
		want(t, got, "leftovers: agents", StatusWarn, "`kubectl -n shop delete deployment tether-gateway`")
	})
}

func TestRunHost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		goos   string
		err    error
		status Status
		says   []string
	}{
		{"linux ok", "linux", nil, StatusOK, []string{"namespace mode works"}},
		{"apparmor", "linux", errors.New("AppArmor restricts unprivileged user namespaces on this machine (kernel.apparmor_restrict_unprivileged_userns=1): allow them with a profile"),
			StatusWarn, []string{"AppArmor restricts", "falls back to --network proxy", "FIX allow them with a profile"}},
		{"macOS", "darwin", nil, StatusSkipped, []string{"needs Linux", "proxy mode", "docs/run.md"}},
		{"windows", "windows", nil, StatusSkipped, []string{"needs Linux (this is windows)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, namespace(nil))
			o, out := c.options()
			o.SkipImage, o.GOOS, o.HostCheck = true, tc.goos, func() error { return tc.err }
			got, err := run(t, o, out)
			cmdtest.WantError(t, err, cmdutil.ExitOK, "")
			want(t, got, "run on this machine", tc.status, tc.says...)
		})
	}
}

// TestRunInterrupted: Ctrl-C while the test pod starts ends doctor as
// canceled (exit 130), and the pod is deleted all the same.
func TestRunInterrupted(t *testing.T) {
	c := newCluster(t, namespace(nil))
	c.waiting = "ContainerCreating"
	o, _ := c.options()
	ctx, cancel := context.WithCancel(context.Background())
	c.cs.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		cancel() // the user presses Ctrl-C while doctor waits for the pod
		return false, nil, nil
	})
	err := o.Run(ctx)
	cmdtest.WantError(t, err, cmdutil.ExitCanceled, "interrupted")
	c.wantNoTestPod(t)
}
