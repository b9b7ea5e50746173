package inject

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/errdefs"
)

var opts = Options{AgentImage: "docker.io/tetherkube/tether-agent:dev", SecretName: "tether-agent-deployment-orders"}

func template() *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "orders"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "orders",
			Image: "orders:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")},
			}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("metrics")},
			}},
		}}},
	}
}

func service(target intstr.IntOrString) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "orders"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: target, Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP},
			},
		},
	}
}

func agentOf(t *testing.T, tmpl corev1.PodTemplateSpec) corev1.Container {
	t.Helper()
	for _, c := range tmpl.Spec.Containers {
		if c.Name == AgentContainer {
			return c
		}
	}
	t.Fatal("no agent container")
	return corev1.Container{}
}

func TestBuildNamedTargetPort(t *testing.T) {
	tmpl, svc := template(), service(intstr.FromString("http"))
	before := tmpl.DeepCopy()
	plan, err := Build(tmpl, svc, PortRef{Name: "http"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, tmpl); diff != "" {
		t.Errorf("Build modified its input (-before +after):\n%s", diff)
	}
	if plan.Service != nil {
		t.Errorf("a named targetPort must leave the Service unchanged, got %+v", plan.Service.Spec.Ports)
	}
	if plan.AppPort != 8080 || plan.AgentPort != FirstAgentPort || plan.AppContainer != "orders" {
		t.Errorf("plan = app %s:%d agent %d", plan.AppContainer, plan.AppPort, plan.AgentPort)
	}
	app := plan.Template.Spec.Containers[0]
	if app.Ports[0].Name != "" {
		t.Errorf("app port kept the name %q; the Service would still reach it", app.Ports[0].Name)
	}
	if got := app.ReadinessProbe.HTTPGet.Port; got != intstr.FromInt32(8080) {
		t.Errorf("readiness probe port = %v, want 8080 so the kubelet probes the app, not the agent", got)
	}
	if got := app.LivenessProbe.TCPSocket.Port; got != intstr.FromString("metrics") {
		t.Errorf("an unrelated probe changed: %v", got)
	}
	agent := agentOf(t, plan.Template)
	wantPorts := []corev1.ContainerPort{{Name: "http", ContainerPort: FirstAgentPort, Protocol: corev1.ProtocolTCP}}
	if diff := cmp.Diff(wantPorts, agent.Ports); diff != "" {
		t.Errorf("agent ports (-want +got):\n%s", diff)
	}
	wantArgs := []string{"--token-file", "/var/run/tether/token", "--forward", "17000:8080"}
	if diff := cmp.Diff(wantArgs, agent.Args); diff != "" {
		t.Errorf("agent args (-want +got):\n%s", diff)
	}
	sc := agent.SecurityContext
	if sc == nil || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot || len(sc.Capabilities.Add) != 0 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("agent security context is not restricted-compliant: %+v", sc)
	}
	if plan.Template.Annotations[AgentAnnotation] != "true" {
		t.Error("template not annotated")
	}
	if v := plan.Template.Spec.Volumes; len(v) != 1 || v[0].Secret.SecretName != opts.SecretName {
		t.Errorf("volumes = %+v", v)
	}
}

func TestBuildNumericTargetPort(t *testing.T) {
	for _, target := range []intstr.IntOrString{intstr.FromInt32(8080), {}} {
		svc := service(target)
		if target.IntVal == 0 {
			svc.Spec.Ports[0].Port = 8080 // an empty targetPort is the port itself
		}
		plan, err := Build(template(), svc, PortRef{Number: svc.Spec.Ports[0].Port}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if plan.Service == nil {
			t.Fatal("a numeric targetPort must be pointed at the agent")
		}
		if got := plan.Service.Spec.Ports[0].TargetPort; got != intstr.FromInt32(FirstAgentPort) {
			t.Errorf("targetPort = %v, want %d", got, FirstAgentPort)
		}
		if got := plan.Service.Spec.Ports[1].TargetPort; got != intstr.FromInt32(5353) {
			t.Errorf("other port's targetPort changed to %v", got)
		}
		if svc.Spec.Ports[0].TargetPort != target {
			t.Error("Build modified the input Service")
		}
		if plan.Template.Spec.Containers[0].Ports[0].Name != "http" {
			t.Error("a numeric targetPort must leave the app's port names alone")
		}
	}
}

func TestBuildSecondPortReusesAgent(t *testing.T) {
	svc := service(intstr.FromString("http"))
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromString("metrics")})
	first, err := Build(template(), svc, PortRef{Name: "http"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(&first.Template, svc, PortRef{Name: "metrics"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if second.AgentPort != FirstAgentPort+1 {
		t.Errorf("second agent port = %d, want %d", second.AgentPort, FirstAgentPort+1)
	}
	agents := 0
	for _, c := range second.Template.Spec.Containers {
		if c.Name == AgentContainer {
			agents++
			if !strings.Contains(strings.Join(c.Args, " "), "--forward 17000:8080 --forward 17001:9090") {
				t.Errorf("agent args = %v", c.Args)
			}
		}
	}
	if agents != 1 || len(second.Template.Spec.Volumes) != 1 {
		t.Errorf("%d agent containers, %d volumes; want 1 each", agents, len(second.Template.Spec.Volumes))
	}
}

func TestBuildErrors(t *testing.T) {
	injected, err := Build(template(), service(intstr.FromInt32(8080)), PortRef{Number: 80}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tmpl *corev1.PodTemplateSpec
		svc  *corev1.Service
		port PortRef
		want string
	}{
		{"no such port name", template(), service(intstr.FromString("http")), PortRef{Name: "web"}, "service orders has no port web; ports: 80/http, 53/dns"},
		{"no such port number", template(), service(intstr.FromString("http")), PortRef{Number: 81}, "has no port 81"},
		{"udp", template(), service(intstr.FromString("http")), PortRef{Name: "dns"}, "tether intercepts TCP only"},
		{"undeclared name", template(), service(intstr.FromString("grpc")), PortRef{Name: "http"}, `targets port "grpc", which no container`},
		{"agent in front of the app port but not reached", &injected.Template, service(intstr.FromInt32(8080)), PortRef{Number: 80}, "already goes through tether's agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.tmpl, tt.svc, tt.port, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrUser) {
				t.Errorf("Build() = %v, want a user error containing %q", err, tt.want)
			}
		})
	}
}

// TestBuildExisting: a port whose traffic already reaches the agent (an
// intercept that was left) needs no change.
func TestBuildExisting(t *testing.T) {
	for _, target := range []intstr.IntOrString{intstr.FromString("http"), intstr.FromInt32(8080)} {
		svc := service(target)
		first, err := Build(template(), svc, PortRef{Name: "http"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if first.Service != nil {
			svc = first.Service
		}
		again, err := Build(&first.Template, svc, PortRef{Name: "http"}, opts)
		if err != nil {
			t.Fatalf("target %v: %v", target, err)
		}
		if !again.Existing || again.AgentPort != first.AgentPort {
			t.Errorf("target %v: plan = existing %v agent port %d, want existing at %d", target, again.Existing, again.AgentPort, first.AgentPort)
		}
		if diff := cmp.Diff(first.Template, again.Template); diff != "" {
			t.Errorf("target %v: template changed (-first +again):\n%s", target, diff)
		}
	}
}

// TestBuildRecordingReconfigures: `tether record` on a port whose traffic
// already reaches an agent restarts that agent with the recording flags
// asked when it records otherwise (an intercept's agent pauses once
// idle), and changes nothing when it already records so.
func TestBuildRecordingReconfigures(t *testing.T) {
	svc := service(intstr.FromString("http"))
	intercepted := opts
	intercepted.RecordArgs = []string{"--record-idle", "5m"} // intercept --agent-idle 5m
	first, err := Build(template(), svc, PortRef{Name: "http"}, intercepted)
	if err != nil {
		t.Fatal(err)
	}
	// A second port: a second --forward.
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromString("metrics")})
	withMetrics, err := Build(&first.Template, svc, PortRef{Name: "metrics"}, intercepted)
	if err != nil {
		t.Fatal(err)
	}
	before := agentOf(t, withMetrics.Template)

	record := opts
	record.Recording = true
	record.RecordArgs = []string{"--record-idle", "0", "--redact", "x-api-key"}
	plan, err := Build(&withMetrics.Template, svc, PortRef{Name: "http"}, record)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Existing || !plan.Reconfigured || plan.AgentPort != first.AgentPort || plan.AppPort != 8080 {
		t.Fatalf("plan: existing %v reconfigured %v agent port %d app port %d, want a reconfigured agent at %d in front of 8080",
			plan.Existing, plan.Reconfigured, plan.AgentPort, plan.AppPort, first.AgentPort)
	}
	if !slices.Equal(plan.Was, []string{"--record-idle", "5m"}) {
		t.Errorf("was %q, want the intercept's --record-idle 5m", plan.Was)
	}
	after := agentOf(t, plan.Template)
	want := []string{"--token-file", TokenMountPath + "/" + TokenKey, "--record-idle", "0", "--redact", "x-api-key"}
	want = append(want, before.Args[4:]...) // the forwards, both ports', in order
	if diff := cmp.Diff(want, after.Args); diff != "" {
		t.Errorf("agent args (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before.Resources, after.Resources); diff != "" {
		t.Errorf("resources changed with the same budget (-before +after):\n%s", diff)
	}
	// Everything but the agent's args is as it was.
	before.Args, after.Args = nil, nil
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("agent container changed beyond its args (-before +after):\n%s", diff)
	}
	if plan.Service != nil {
		t.Error("the Service changes, though it already reaches the agent")
	}

	// Asked again with the same flags: nothing to change.
	again, err := Build(&plan.Template, svc, PortRef{Name: "http"}, record)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Existing || again.Reconfigured {
		t.Errorf("the same recording asked again: existing %v reconfigured %v, want existing", again.Existing, again.Reconfigured)
	}
	// An intercept on the recording agent keeps its flags.
	ic, err := Build(&plan.Template, svc, PortRef{Name: "http"}, intercepted)
	if err != nil {
		t.Fatal(err)
	}
	if !ic.Existing || ic.Reconfigured {
		t.Errorf("an intercept of the recording agent: existing %v reconfigured %v, want existing", ic.Existing, ic.Reconfigured)
	}

	// Another recording budget: the resources follow it.
	bigger := record
	bigger.RecordArgs = []string{"--record-idle", "0", "--record-budget", "256Mi"}
	b, err := Build(&plan.Template, svc, PortRef{Name: "http"}, bigger)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Reconfigured {
		t.Fatal("another budget: not reconfigured")
	}
	if got, want := agentOf(t, b.Template).Resources, DefaultResources(256<<20); got.Limits.Memory().Cmp(*want.Limits.Memory()) != 0 {
		t.Errorf("memory limit %s, want %s for a 256Mi budget", got.Limits.Memory(), want.Limits.Memory())
	}
}

func TestParsePortRef(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRef
		wantErr bool
	}{
		{"http", PortRef{Name: "http"}, false},
		{"80", PortRef{Number: 80}, false},
		{"0", PortRef{}, true},
		{"70000", PortRef{}, true},
		{"", PortRef{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePortRef(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePortRef(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestSelectingServices(t *testing.T) {
	svcs := []corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "orders"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "orders", "tier": "web"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "headless-no-selector"}},
	}
	got := SelectingServices(svcs, map[string]string{"app": "orders", "tier": "web"})
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestBuildPassive: a new agent recording from packets runs as root with
// the runtime's capabilities (NET_RAW); record --passive on a recording
// agent restarts it with the flag and that security context, and a record
// without it gives the agent back its own.
func TestBuildPassive(t *testing.T) {
	svc := service(intstr.FromString("http"))
	passive := opts
	passive.Recording = true
	passive.RecordArgs = []string{"--record-idle", "0", "--record-passive"}
	added, err := Build(template(), svc, PortRef{Name: "http"}, passive)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(agentspec.PassiveSecurityContext(), agentOf(t, added.Template).SecurityContext); diff != "" {
		t.Errorf("a new passive agent's security context (-want +got):\n%s", diff)
	}

	plain := passive
	plain.RecordArgs = []string{"--record-idle", "0"}
	recording, err := Build(template(), svc, PortRef{Name: "http"}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(agentspec.SecurityContext(), agentOf(t, recording.Template).SecurityContext); diff != "" {
		t.Errorf("a recording agent's security context (-want +got):\n%s", diff)
	}
	toPassive, err := Build(&recording.Template, svc, PortRef{Name: "http"}, passive)
	if err != nil {
		t.Fatal(err)
	}
	a := agentOf(t, toPassive.Template)
	if !toPassive.Reconfigured || !slices.Contains(a.Args, "--record-passive") {
		t.Fatalf("record --passive on a recording agent: reconfigured %v, args %q; want a restart with --record-passive", toPassive.Reconfigured, a.Args)
	}
	if diff := cmp.Diff(agentspec.PassiveSecurityContext(), a.SecurityContext); diff != "" {
		t.Errorf("the reconfigured agent's security context (-want +got):\n%s", diff)
	}
	back, err := Build(&toPassive.Template, svc, PortRef{Name: "http"}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recording.Template, back.Template); !back.Reconfigured || diff != "" {
		t.Errorf("record without --passive: reconfigured %v, template (-want +got):\n%s", back.Reconfigured, diff)
	}
}
