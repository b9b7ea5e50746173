package inject

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/internal/errdefs"
)

// TestBuildRefusesWhatCannotReceiveTraffic: an intercept the traffic would
// bypass is refused before anything changes, with the reason.
func TestBuildRefusesWhatCannotReceiveTraffic(t *testing.T) {
	headless := service(intstr.FromString("http"))
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	external := service(intstr.FromString("http"))
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "orders.example.com"
	hostNet := template()
	hostNet.Spec.HostNetwork = true

	tests := []struct {
		name     string
		tmpl     *corev1.PodTemplateSpec
		svc      *corev1.Service
		sentinel error
		want     string
	}{
		{"headless", template(), headless, ErrHeadless, "service orders is headless (clusterIP: None)"},
		{"external name", template(), external, ErrExternalName, "DNS alias for orders.example.com"},
		{"host network", hostNet, service(intstr.FromString("http")), ErrHostNetwork, "use hostNetwork"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.tmpl, tt.svc, PortRef{Name: "http"}, opts)
			if !errors.Is(err, tt.sentinel) || !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build() = %v, want a user error %v saying %q", err, tt.sentinel, tt.want)
			}
		})
	}
}

// TestBuildTCPPortOnly: a UDP container port of the same number as a TCP
// Service port's target is not the port the Service reaches.
func TestBuildTCPPortOnly(t *testing.T) {
	tmpl := template()
	tmpl.Spec.Containers = append([]corev1.Container{{Name: "dns", Ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolUDP},
	}}}, tmpl.Spec.Containers...)
	plan, err := Build(tmpl, service(intstr.FromString("http")), PortRef{Name: "http"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if plan.AppContainer != "orders" {
		t.Errorf("app container = %q, want orders (the TCP port named http)", plan.AppContainer)
	}
}

// TestBuildKeepsAppProtocol: a port with appProtocol keeps it when its
// targetPort moves to the agent (the agent forwards bytes, whatever the
// protocol).
func TestBuildKeepsAppProtocol(t *testing.T) {
	svc := service(intstr.FromInt32(8080))
	h2c := "kubernetes.io/h2c"
	svc.Spec.Ports[0].AppProtocol = &h2c
	plan, err := Build(template(), svc, PortRef{Name: "http"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if p := plan.Service.Spec.Ports[0]; p.AppProtocol == nil || *p.AppProtocol != h2c || p.TargetPort != intstr.FromInt32(FirstAgentPort) {
		t.Errorf("port = %+v, want appProtocol %s kept and targetPort %d", p, h2c, FirstAgentPort)
	}
}

// TestSecretNameHasKind: a Deployment and a StatefulSet of the same name get
// separate token Secrets.
func TestSecretNameHasKind(t *testing.T) {
	d, s := SecretName("Deployment", "orders"), SecretName("StatefulSet", "orders")
	if d == s {
		t.Fatalf("deployment and statefulset orders share the token Secret %q", d)
	}
	if d != "tether-agent-deployment-orders" {
		t.Errorf("SecretName = %q", d)
	}
	plan, err := Build(template(), service(intstr.FromString("http")), PortRef{Name: "http"}, Options{AgentImage: "a", SecretName: d})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := TokenSecret(&plan.Template.Spec); !ok || got != d {
		t.Errorf("TokenSecret = %q, %v; want %q", got, ok, d)
	}
	if _, ok := TokenSecret(&template().Spec); ok {
		t.Error("TokenSecret found a Secret in a template without the agent")
	}
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }

// TestAgentResources: the agent gets requests and limits, so a namespace
// whose ResourceQuota covers CPU and memory admits its pods; the memory
// limit stays above what the agent's Go memory limit lets it use.
func TestAgentResources(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantMem string
	}{
		{"defaults", opts, "128Mi"},
		{"larger recording budget", Options{AgentImage: "a", RecordArgs: []string{"--record-budget", "268435456"}}, "320Mi"},
		{"budget with suffix", Options{AgentImage: "a", RecordArgs: []string{"--record-budget", "16Mi"}}, "80Mi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Build(template(), service(intstr.FromString("http")), PortRef{Name: "http"}, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			r := agentOf(t, plan.Template).Resources
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := r.Requests[name]; !ok {
					t.Errorf("no %s request", name)
				}
				if _, ok := r.Limits[name]; !ok {
					t.Errorf("no %s limit", name)
				}
			}
			if got := r.Limits[corev1.ResourceMemory]; got.Cmp(mustQ(tt.wantMem)) != 0 {
				t.Errorf("memory limit = %s, want %s", got.String(), tt.wantMem)
			}
		})
	}

	custom := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: mustQ("5m"), corev1.ResourceMemory: mustQ("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: mustQ("1"), corev1.ResourceMemory: mustQ("100Mi")},
	}
	plan, err := Build(template(), service(intstr.FromString("http")), PortRef{Name: "http"}, Options{AgentImage: "a", Resources: &custom})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(custom, agentOf(t, plan.Template).Resources); diff != "" {
		t.Errorf("given resources not used (-want +got):\n%s", diff)
	}
}

func TestAgentResourcesRefused(t *testing.T) {
	small := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: mustQ("64Mi")}}
	upside := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: mustQ("2")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: mustQ("1")},
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"memory limit below the budget", Options{AgentImage: "a", Resources: &small}, "memory limit 64Mi is too small for its recording budget of 64Mi"},
		{"request above limit", Options{AgentImage: "a", Resources: &upside}, "cpu request 2 is above its limit 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(template(), service(intstr.FromString("http")), PortRef{Name: "http"}, tt.opts)
			if err == nil || !errors.Is(err, errdefs.ErrUser) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build() = %v, want a user error saying %q", err, tt.want)
			}
		})
	}
	noRecord := Options{AgentImage: "a", Resources: &small, RecordArgs: []string{"--no-record"}}
	if _, err := Build(template(), service(intstr.FromString("http")), PortRef{Name: "http"}, noRecord); err != nil {
		t.Errorf("an agent that does not record needs no room for a budget: %v", err)
	}
}

func TestReachableServices(t *testing.T) {
	clusterIP := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"}}
	headless := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db-headless"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}
	names := func(svcs []corev1.Service) []string {
		var out []string
		for _, s := range svcs {
			out = append(out, s.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"db"}, names(ReachableServices([]corev1.Service{headless, clusterIP}))); diff != "" {
		t.Errorf("headless beside a ClusterIP Service (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"db-headless"}, names(ReachableServices([]corev1.Service{headless}))); diff != "" {
		t.Errorf("headless alone is kept for Build to refuse (-want +got):\n%s", diff)
	}
}
