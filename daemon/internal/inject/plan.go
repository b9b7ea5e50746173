// Package inject computes the change that puts tether's agent in front of a
// workload's port: the agent container added to the pod template, and the
// Service's traffic for that port moved to the agent without iptables. It is
// pure: it takes objects and returns changed copies, and the caller applies
// them (after journaling the originals).
package inject

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Names tether uses in the objects it changes.
const (
	AgentContainer = agentspec.Container
	TokenVolume    = agentspec.TokenVolume
	TokenMountPath = "/var/run/tether"
	TokenKey       = "token"
	// AgentAnnotation on a pod template marks it as changed by tether.
	AgentAnnotation = agentspec.AgentAnnotation
	// FirstAgentPort is where the agent's listen ports are allocated from.
	FirstAgentPort = 17000
)

// PortRef is the Service port the user named: by name, or by number.
type PortRef struct {
	Name   string
	Number int32
}

// ParsePortRef parses "http" or "80".
func ParsePortRef(s string) (PortRef, error) {
	if s == "" {
		return PortRef{}, errdefs.User("empty service port: name it (e.g. http) or give its number (e.g. 80)")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 65535 {
			return PortRef{}, errdefs.User("service port %d is out of range 1-65535", n)
		}
		return PortRef{Number: int32(n)}, nil
	}
	return PortRef{Name: s}, nil
}

func (p PortRef) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// Options are the agent's settings.
type Options struct {
	AgentImage string
	// SecretName names the Secret holding the tunnel token.
	SecretName string
	// PullPolicy of the agent image.
	PullPolicy corev1.PullPolicy
	// RecordArgs are the agent's recording flags (--redact, --no-redact,
	// ...), given when the agent container is added.
	RecordArgs []string
	// Recording: RecordArgs are what the user asked to record with
	// (`tether record`), and replace those of an agent already there.
	Recording bool
	// Resources are the agent container's requests and limits; nil gives
	// DefaultResources for the recording budget.
	Resources *corev1.ResourceRequirements
}

// Plan is the change for one intercepted port.
type Plan struct {
	// Template is the changed pod template.
	Template corev1.PodTemplateSpec
	// Service is the changed Service, or nil when the Service stays as it is
	// (a named targetPort: the agent's port takes the name).
	Service *corev1.Service
	// ServicePort is the Service port intercepted.
	ServicePort corev1.ServicePort
	// AppContainer and AppPort are where the traffic went before.
	AppContainer string
	AppPort      int32
	// AgentPort is where the agent now accepts that traffic.
	AgentPort int32
	// Existing is true when the port already goes through the agent (an
	// earlier intercept that was left): nothing needs to change, and
	// Template and Service are the inputs, unchanged.
	Existing bool
	// Reconfigured: the port already goes through the agent, but the agent
	// records otherwise than asked (Options.Recording); Template restarts
	// it with the recording flags asked, and was is what it ran with.
	Reconfigured bool
	Was          []string
}

// Build plans the agent in front of port of svc, for a workload whose pod
// template is tmpl. Neither argument is modified.
func Build(tmpl *corev1.PodTemplateSpec, svc *corev1.Service, port PortRef, opts Options) (Plan, error) {
	if err := checkReachable(tmpl, svc); err != nil {
		return Plan{}, err
	}
	sp, err := findServicePort(svc, port)
	if err != nil {
		return Plan{}, err
	}
	t := *tmpl.DeepCopy()
	if port, ok := agentTarget(&t, sp); ok {
		plan := Plan{Template: t, ServicePort: sp, AgentPort: port, Existing: true}
		if opts.Recording {
			was, changed, err := setRecordArgs(&plan.Template, opts)
			if err != nil {
				return Plan{}, err
			}
			if changed {
				plan.Existing, plan.Reconfigured, plan.Was = false, true, was
				if f, ok := forwardOf(&t, port); ok {
					plan.AppPort = f
				}
			}
		}
		return plan, nil
	}
	appIdx, appPortIdx, err := findTarget(&t, svc, sp)
	if err != nil {
		return Plan{}, err
	}
	app := &t.Spec.Containers[appIdx]
	appPort := app.Ports[appPortIdx]
	if existing, ok := agentForward(&t, appPort.ContainerPort); ok {
		return Plan{}, errdefs.User("the app's port %d already goes through tether's agent (agent port %d), but service %s port %s "+
			"does not reach the agent; run `tether rollback` to start over", appPort.ContainerPort, existing, svc.Name, port)
	}
	resources, err := agentResources(opts)
	if err != nil {
		return Plan{}, err
	}
	agentPort := freePort(&t)
	plan := Plan{ServicePort: sp, AppContainer: app.Name, AppPort: appPort.ContainerPort, AgentPort: agentPort}

	agentPortSpec := corev1.ContainerPort{ContainerPort: agentPort, Protocol: corev1.ProtocolTCP}
	if sp.TargetPort.Type == intstr.String {
		// The Service finds the port by name: give the name to the agent's
		// port, and make the app's probes that used the name use the number,
		// so the kubelet still probes the app itself.
		agentPortSpec.Name = appPort.Name
		app.Ports[appPortIdx].Name = ""
		pinProbes(app, appPort.Name, appPort.ContainerPort)
	} else {
		s := svc.DeepCopy()
		for i := range s.Spec.Ports {
			if s.Spec.Ports[i].Name == sp.Name && s.Spec.Ports[i].Port == sp.Port {
				s.Spec.Ports[i].TargetPort = intstr.FromInt32(agentPort)
			}
		}
		plan.Service = s
	}
	addAgent(&t, opts, resources, agentPortSpec, appPort.ContainerPort)
	plan.Template = t
	return plan, nil
}

// AsidePorts returns ports with each port that reaches the agent
// container of t (by the name or the number of one of its ports) sent to
// the app's port the agent forwards it to, by number, and whether any
// port was.
func AsidePorts(t *corev1.PodTemplateSpec, ports []corev1.ServicePort) ([]corev1.ServicePort, bool) {
	out := make([]corev1.ServicePort, len(ports))
	changed := false
	for i, sp := range ports {
		sp := *sp.DeepCopy()
		if agentPort, ok := agentTarget(t, sp); ok {
			if appPort, ok := forwardOf(t, agentPort); ok {
				sp.TargetPort = intstr.FromInt32(appPort)
				changed = true
			}
		}
		out[i] = sp
	}
	return out, changed
}

// agentTarget reports whether the Service port already sends its traffic to
// the agent container, and to which agent port.
func agentTarget(t *corev1.PodTemplateSpec, sp corev1.ServicePort) (int32, bool) {
	for _, c := range t.Spec.Containers {
		if c.Name != AgentContainer {
			continue
		}
		for _, p := range c.Ports {
			if (sp.TargetPort.Type == intstr.String && p.Name == sp.TargetPort.StrVal) ||
				(sp.TargetPort.Type == intstr.Int && p.ContainerPort == sp.TargetPort.IntVal) {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func findServicePort(svc *corev1.Service, ref PortRef) (corev1.ServicePort, error) {
	for _, p := range svc.Spec.Ports {
		if (ref.Name != "" && p.Name == ref.Name) || (ref.Number != 0 && p.Port == ref.Number) {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				return corev1.ServicePort{}, errdefs.User("service %s port %s is %s; tether intercepts TCP only", svc.Name, ref, p.Protocol)
			}
			return p, nil
		}
	}
	return corev1.ServicePort{}, errdefs.User("service %s has no port %s; ports: %s", svc.Name, ref, describePorts(svc))
}

func describePorts(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		s := strconv.Itoa(int(p.Port))
		if p.Name != "" {
			s += "/" + p.Name
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// findTarget finds the container and port a Service port sends traffic to.
func findTarget(t *corev1.PodTemplateSpec, svc *corev1.Service, sp corev1.ServicePort) (int, int, error) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int && tp.IntVal == 0 {
		tp = intstr.FromInt32(sp.Port) // an empty targetPort means the port itself
	}
	for ci, c := range t.Spec.Containers {
		if c.Name == AgentContainer {
			continue
		}
		for pi, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue // a UDP port of the same number or name is not what a TCP Service port reaches
			}
			if (tp.Type == intstr.String && p.Name == tp.StrVal) || (tp.Type == intstr.Int && p.ContainerPort == tp.IntVal) {
				return ci, pi, nil
			}
		}
	}
	if tp.Type == intstr.Int {
		// A numeric targetPort need not be declared by any container; it is
		// served by whichever container listens there. Declare nothing, but
		// the agent must know the number: pretend the first container owns it.
		if len(t.Spec.Containers) == 0 {
			return 0, 0, errdefs.User("the workload's pod template has no containers")
		}
		idx := slices.IndexFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name != AgentContainer })
		if idx < 0 {
			return 0, 0, errdefs.User("the workload's pod template has no app container")
		}
		c := &t.Spec.Containers[idx]
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: tp.IntVal, Protocol: corev1.ProtocolTCP})
		return idx, len(c.Ports) - 1, nil
	}
	return 0, 0, errdefs.User("service %s port %s targets port %q, which no container of the workload declares",
		svc.Name, portName(sp), tp.StrVal)
}

func portName(sp corev1.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return strconv.Itoa(int(sp.Port))
}

// pinProbes replaces named references to port in c's probes by number.
func pinProbes(c *corev1.Container, name string, number int32) {
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if h := p.HTTPGet; h != nil && h.Port.Type == intstr.String && h.Port.StrVal == name {
			h.Port = intstr.FromInt32(number)
		}
		if s := p.TCPSocket; s != nil && s.Port.Type == intstr.String && s.Port.StrVal == name {
			s.Port = intstr.FromInt32(number)
		}
	}
}

// freePort returns the first port from FirstAgentPort no container uses.
func freePort(t *corev1.PodTemplateSpec) int32 {
	used := map[int32]bool{}
	for _, c := range append(slices.Clone(t.Spec.InitContainers), t.Spec.Containers...) {
		for _, p := range c.Ports {
			used[p.ContainerPort] = true
		}
	}
	for _, f := range agentForwards(t) {
		used[f[0]] = true
	}
	p := int32(FirstAgentPort)
	for used[p] {
		p++
	}
	return p
}

// agentForwards returns the agent container's LISTEN:APP pairs.
func agentForwards(t *corev1.PodTemplateSpec) [][2]int32 {
	var out [][2]int32
	for _, c := range t.Spec.Containers {
		if c.Name != AgentContainer {
			continue
		}
		for i, a := range c.Args {
			if a == "--forward" && i+1 < len(c.Args) {
				l, r, _ := strings.Cut(c.Args[i+1], ":")
				ln, _ := strconv.Atoi(l)
				rn, _ := strconv.Atoi(r)
				out = append(out, [2]int32{int32(ln), int32(rn)})
			}
		}
	}
	return out
}

// forwardOf returns the app port the agent forwards agentPort to.
func forwardOf(t *corev1.PodTemplateSpec, agentPort int32) (int32, bool) {
	for _, f := range agentForwards(t) {
		if f[0] == agentPort {
			return f[1], true
		}
	}
	return 0, false
}

// recordFlags are the agent's recording flags, each with whether it takes
// a value: what `tether record` sets (daemon.RecordRequest.RecordArgs) and
// an intercept's --agent-idle.
var recordFlags = map[string]bool{"--record-idle": true, "--redact": true, "--record-body-cap": true,
	"--record-budget": true, "--no-redact": false, "--no-record": false, agentspec.PassiveRecordFlag: false}

// RecordsPassively reports whether t's agent records from a copy of the
// pod's packets (record --passive).
func RecordsPassively(t *corev1.PodTemplateSpec) bool {
	i := slices.IndexFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AgentContainer })
	return i >= 0 && slices.Contains(t.Spec.Containers[i].Args, agentspec.PassiveRecordFlag)
}

// securityContext is the sidecar's for its recording flags: no added
// capability, so that it works where PodSecurity is "restricted", unless
// it records from packets.
func securityContext(recordArgs []string) *corev1.SecurityContext {
	if slices.Contains(recordArgs, agentspec.PassiveRecordFlag) {
		return agentspec.PassiveSecurityContext()
	}
	return agentspec.SecurityContext()
}

// setRecordArgs gives the agent container of t the recording flags of
// opts in place of its own, and the resources a new agent with opts gets
// when opts name resources or another recording budget. It returns the
// recording flags the agent had, and whether anything changed.
func setRecordArgs(t *corev1.PodTemplateSpec, opts Options) ([]string, bool, error) {
	i := slices.IndexFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AgentContainer })
	if i < 0 {
		return nil, false, nil
	}
	c := &t.Spec.Containers[i]
	var head, was, rest []string
	for j := 0; j < len(c.Args); j++ {
		a := c.Args[j]
		takesValue, isRecord := recordFlags[a]
		switch {
		case a == "--token-file" && j+1 < len(c.Args):
			head = append(head, a, c.Args[j+1])
			j++
		case isRecord && takesValue && j+1 < len(c.Args):
			was = append(was, a, c.Args[j+1])
			j++
		case isRecord:
			was = append(was, a)
		default:
			rest = append(rest, a)
		}
	}
	if slices.Equal(was, opts.RecordArgs) && opts.Resources == nil {
		return was, false, nil
	}
	args := append(append(slices.Clone(head), opts.RecordArgs...), rest...)
	changed := !slices.Equal(args, c.Args)
	c.Args = args
	if sc := securityContext(opts.RecordArgs); !equality.Semantic.DeepEqual(sc, c.SecurityContext) {
		c.SecurityContext, changed = sc, true
	}
	if opts.Resources != nil || recordBudget(was) != recordBudget(opts.RecordArgs) {
		r, err := agentResources(opts)
		if err != nil {
			return nil, false, err
		}
		if !equality.Semantic.DeepEqual(r, c.Resources) {
			c.Resources, changed = r, true
		}
	}
	return was, changed, nil
}

func agentForward(t *corev1.PodTemplateSpec, appPort int32) (int32, bool) {
	for _, f := range agentForwards(t) {
		if f[1] == appPort {
			return f[0], true
		}
	}
	return 0, false
}

// addAgent adds the agent container (or a forward to it) to t.
func addAgent(t *corev1.PodTemplateSpec, opts Options, resources corev1.ResourceRequirements, port corev1.ContainerPort, appPort int32) {
	fwd := []string{"--forward", fmt.Sprintf("%d:%d", port.ContainerPort, appPort)}
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[AgentAnnotation] = "true"
	for i := range t.Spec.Containers {
		if c := &t.Spec.Containers[i]; c.Name == AgentContainer {
			c.Args = append(c.Args, fwd...)
			c.Ports = append(c.Ports, port)
			return
		}
	}
	pull := opts.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	t.Spec.Containers = append(t.Spec.Containers, corev1.Container{
		Name:            AgentContainer,
		Image:           opts.AgentImage,
		ImagePullPolicy: pull,
		Args:            append(append([]string{"--token-file", TokenMountPath + "/" + TokenKey}, opts.RecordArgs...), fwd...),
		Ports:           []corev1.ContainerPort{port},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		VolumeMounts:    []corev1.VolumeMount{{Name: TokenVolume, MountPath: TokenMountPath, ReadOnly: true}},
		Resources:       resources,
		SecurityContext: securityContext(opts.RecordArgs),
	})
	mode := int32(0o444) // the agent runs as a non-root user the volume does not belong to
	t.Spec.Volumes = append(t.Spec.Volumes, corev1.Volume{
		Name: TokenVolume,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: opts.SecretName, DefaultMode: &mode,
		}},
	})
}

// SelectingServices returns the Services whose selector matches labels,
// sorted by name.
func SelectingServices(svcs []corev1.Service, labels map[string]string) []corev1.Service {
	var out []corev1.Service
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 {
			continue
		}
		match := true
		for k, v := range s.Spec.Selector {
			if labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
