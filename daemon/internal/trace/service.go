package trace

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tetherkube/tether/agent"
)

// service finds the Service (or pod) behind the destination and checks its
// port mapping and endpoints.
func (tr *Tracer) service(ctx context.Context, s *state) (Step, error) {
	t := s.target
	switch t.Kind {
	case KindPod:
		return tr.podDestination(ctx, s)
	case KindService:
		svc, err := tr.CS.CoreV1().Services(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return Step{Status: Broken, Summary: fmt.Sprintf("no Service %q in namespace %s%s", t.Name, t.Namespace, tr.serviceNames(ctx, t.Namespace))}, nil
		}
		if err != nil {
			return Step{}, fmt.Errorf("read service %s/%s: %w", t.Namespace, t.Name, err)
		}
		return tr.serviceStep(ctx, s, svc)
	}
	if len(s.addresses) == 0 {
		return skipped("the destination has no address"), nil
	}
	if s.target.Kind == KindName {
		// The answered name tells the Service: NAME.NAMESPACE.svc.<domain>,
		// or HOST.NAME.NAMESPACE.svc.<domain> for a headless Service's pod.
		if ns, name, ok := serviceFromFQDN(s.answeredName); ok {
			svc, err := tr.CS.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				return tr.serviceStep(ctx, s, svc)
			}
			if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
				return Step{}, err
			}
		}
	}
	svc, pod, forbidden, err := tr.byAddress(ctx, s.addresses[0])
	if err != nil {
		return Step{}, err
	}
	switch {
	case svc != nil:
		return tr.serviceStep(ctx, s, svc)
	case pod != nil:
		return tr.podStep(ctx, s, pod, t.Port)
	}
	if t.Port != "" {
		p, _ := strconv.Atoi(t.Port)
		s.port = int32(p)
		s.endpoints = []Endpoint{{Address: s.addresses[0], Port: s.port, Ready: true, Serving: true}}
	}
	if t.HTTP() {
		s.http = &agent.HTTPProbe{Path: t.Path, Host: t.Host}
	}
	if forbidden {
		return skipped(fmt.Sprintf("cannot tell whether %s is a Service or a pod: listing services and pods in all namespaces is forbidden", s.addresses[0])), nil
	}
	return skipped(fmt.Sprintf("%s is not a cluster Service or pod: traffic leaves through the pod's default route", s.addresses[0])), nil
}

// serviceFromFQDN reads "orders.demo.svc.cluster.local." as demo/orders.
func serviceFromFQDN(fqdn string) (ns, name string, ok bool) {
	labels := strings.Split(strings.TrimSuffix(fqdn, "."), ".")
	for i := 2; i < len(labels); i++ {
		if labels[i] == "svc" {
			return labels[i-1], labels[i-2], true
		}
	}
	return "", "", false
}

// byAddress finds the Service whose ClusterIP, or else the pod whose IP, is
// addr, across namespaces; forbidden reports that the user may not list
// them.
func (tr *Tracer) byAddress(ctx context.Context, addr string) (svc *corev1.Service, pod *corev1.Pod, forbidden bool, err error) {
	svcs, err := tr.CS.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsForbidden(err) {
		return nil, nil, false, fmt.Errorf("list services: %w", err)
	}
	forbidden = err != nil
	if err == nil {
		for i := range svcs.Items {
			for _, ip := range svcs.Items[i].Spec.ClusterIPs {
				if ip == addr {
					return &svcs.Items[i], nil, false, nil
				}
			}
		}
	}
	pods, err := tr.CS.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=" + addr})
	if err != nil && !apierrors.IsForbidden(err) {
		return nil, nil, false, fmt.Errorf("list pods: %w", err)
	}
	forbidden = forbidden || err != nil
	if err == nil {
		for i := range pods.Items {
			if !pods.Items[i].Spec.HostNetwork {
				return nil, &pods.Items[i], false, nil
			}
		}
	}
	return nil, nil, forbidden, nil
}

func (tr *Tracer) serviceNames(ctx context.Context, ns string) string {
	list, err := tr.CS.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) == 0 {
		return ""
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return "; Services there: " + strings.Join(names, ", ")
}

// serviceStep checks svc: its port, its selector, and its endpoints.
func (tr *Tracer) serviceStep(ctx context.Context, s *state, svc *corev1.Service) (Step, error) {
	s.svc = svc
	res := &ServiceResult{Namespace: svc.Namespace, Name: svc.Name, Type: string(svc.Spec.Type), ClusterIP: svc.Spec.ClusterIP,
		Selector: svc.Spec.Selector, ExternalName: svc.Spec.ExternalName, Endpoints: []Endpoint{}}
	step := Step{Service: res, Status: OK}
	ref := fmt.Sprintf("service %s/%s", svc.Namespace, svc.Name)
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		step.Summary = fmt.Sprintf("%s is an ExternalName for %s: DNS answers with that name, there are no endpoints", ref, svc.Spec.ExternalName)
		return step, nil
	}
	sp, why := pickPort(svc, s.target.Port)
	if sp == nil {
		step.Status, step.Summary = Broken, fmt.Sprintf("%s %s", ref, why)
		return step, nil
	}
	s.svcPort = sp
	res.Port = &PortMapping{Name: sp.Name, Protocol: string(sp.Protocol), Port: sp.Port, TargetPort: sp.TargetPort.String()}
	if sp.AppProtocol != nil {
		res.Port.AppProtocol = *sp.AppProtocol
	}
	if why != "" {
		step.Details = append(step.Details, why)
	}
	if s.target.HTTP() || isHTTPPort(sp) {
		path := s.target.Path
		host := s.target.Host
		if host == "" {
			host = s.lookupName()
		}
		s.http = &agent.HTTPProbe{Path: path, Host: host}
	}
	// Endpoints, from the EndpointSlices the control plane keeps.
	slices, err := tr.CS.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return Step{}, fmt.Errorf("list endpointslices of %s: %w", ref, err)
	}
	for _, sl := range slices.Items {
		port, ok := slicePort(sl, sp.Name)
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			e := Endpoint{Address: ep.Addresses[0], Port: port, Ready: isTrue(ep.Conditions.Ready, true),
				Serving: isTrue(ep.Conditions.Serving, true), Terminating: isTrue(ep.Conditions.Terminating, false)}
			if ep.NodeName != nil {
				e.Node = *ep.NodeName
			}
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				e.Pod, e.Namespace = ep.TargetRef.Name, ep.TargetRef.Namespace
				if pod, err := tr.CS.CoreV1().Pods(e.Namespace).Get(ctx, e.Pod, metav1.GetOptions{}); err == nil {
					s.pods[e.Address] = pod
					if !e.Ready {
						e.Reason = tr.notReady(ctx, pod)
					}
				} else if !e.Ready {
					e.Reason = "its pod is gone"
				}
			}
			res.Endpoints = append(res.Endpoints, e)
		}
	}
	sort.Slice(res.Endpoints, func(i, j int) bool { return res.Endpoints[i].Address < res.Endpoints[j].Address })
	s.endpoints = res.Endpoints
	if s.http != nil && s.http.Path == "" && len(res.Endpoints) > 0 {
		s.http.Path = probePath(s.pods[res.Endpoints[0].Address], res.Endpoints[0].Port)
	}
	if len(res.Endpoints) > 0 {
		s.port = res.Endpoints[0].Port
	} else if sp.TargetPort.Type == intstr.Int {
		s.port = sp.TargetPort.IntVal
	}

	step.Details = append(step.Details, fmt.Sprintf("%s, %s; port %s -> targetPort %s%s", strings.ToLower(res.Type), svc.Spec.ClusterIP,
		portText(sp), sp.TargetPort.String(), containerPorts(res.Endpoints)))
	if len(svc.Spec.Selector) > 0 {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		pods, err := tr.CS.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return Step{}, fmt.Errorf("list pods of %s: %w", ref, err)
		}
		res.SelectedPods = len(pods.Items)
		step.Details = append(step.Details, fmt.Sprintf("selector %s matches %d %s", labelString(svc.Spec.Selector), res.SelectedPods, plural(res.SelectedPods, "pod")))
	} else {
		step.Details = append(step.Details, "no selector: its endpoints are managed by hand or by another controller")
	}
	ready := 0
	for _, e := range res.Endpoints {
		step.Details = append(step.Details, endpointLine(e))
		if e.Ready {
			ready++
		}
	}
	switch {
	case len(svc.Spec.Selector) > 0 && res.SelectedPods == 0:
		step.Status = Broken
		step.Summary = fmt.Sprintf("%s has no endpoints: its selector %s matches no pod in namespace %s%s",
			ref, labelString(svc.Spec.Selector), svc.Namespace, tr.similarPods(ctx, svc))
	case len(res.Endpoints) == 0:
		step.Status, step.Summary = Broken, fmt.Sprintf("%s has no endpoints for port %s", ref, portText(sp))
	case ready == 0:
		step.Status = Broken
		step.Summary = fmt.Sprintf("%s has no ready endpoint: %d not ready (%s)", ref, len(res.Endpoints), firstReason(res.Endpoints))
	case ready < len(res.Endpoints):
		step.Status = Warn
		step.Summary = fmt.Sprintf("%s: %d of %d endpoints ready (%s)", ref, ready, len(res.Endpoints), firstReason(res.Endpoints))
	default:
		step.Summary = fmt.Sprintf("%s %s:%d -> %d ready %s", ref, svc.Spec.ClusterIP, sp.Port, ready, plural(ready, "endpoint"))
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone && step.Status != Broken {
		step.Summary += " (headless: DNS answers with the pods' addresses)"
	}
	return step, nil
}

// pickPort chooses the Service port the user asked for; with none asked
// and several ports, the first, saying so. why explains a nil port.
func pickPort(svc *corev1.Service, want string) (*corev1.ServicePort, string) {
	if len(svc.Spec.Ports) == 0 {
		return nil, "has no ports"
	}
	if want == "" {
		if len(svc.Spec.Ports) > 1 {
			return &svc.Spec.Ports[0], fmt.Sprintf("several ports (%s): tracing the first; add :PORT to choose", portList(svc))
		}
		return &svc.Spec.Ports[0], ""
	}
	for i, p := range svc.Spec.Ports {
		if p.Name == want || strconv.Itoa(int(p.Port)) == want {
			return &svc.Spec.Ports[i], ""
		}
	}
	return nil, fmt.Sprintf("has no port %s; ports: %s", want, portList(svc))
}

func portList(svc *corev1.Service) string {
	var ps []string
	for i := range svc.Spec.Ports {
		ps = append(ps, portText(&svc.Spec.Ports[i]))
	}
	return strings.Join(ps, ", ")
}

func portText(p *corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%d/%s", p.Port, p.Name)
	}
	return strconv.Itoa(int(p.Port))
}

func isHTTPPort(p *corev1.ServicePort) bool {
	if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
		return false
	}
	if p.AppProtocol != nil {
		ap := strings.ToLower(*p.AppProtocol)
		return ap == "http" || ap == "kubernetes.io/h2c"
	}
	return p.Name == "http" || strings.HasPrefix(p.Name, "http-")
}

func slicePort(sl discoveryv1.EndpointSlice, name string) (int32, bool) {
	for _, p := range sl.Ports {
		n := ""
		if p.Name != nil {
			n = *p.Name
		}
		if n == name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

func isTrue(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func containerPorts(eps []Endpoint) string {
	seen := map[int32]bool{}
	var ports []string
	for _, e := range eps {
		if !seen[e.Port] {
			seen[e.Port] = true
			ports = append(ports, strconv.Itoa(int(e.Port)))
		}
	}
	if len(ports) == 0 {
		return ""
	}
	return " -> container port " + strings.Join(ports, ", ")
}

func endpointLine(e Endpoint) string {
	state := "ready"
	switch {
	case e.Terminating:
		state = "terminating"
	case !e.Ready:
		state = "NOT READY"
	}
	line := fmt.Sprintf("endpoint %s %s", net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port))), state)
	if e.Pod != "" {
		line += " pod " + e.Pod
	}
	if e.Reason != "" {
		line += ": " + e.Reason
	}
	return line
}

func firstReason(eps []Endpoint) string {
	for _, e := range eps {
		if !e.Ready {
			if e.Reason != "" {
				return fmt.Sprintf("pod %s: %s", e.Pod, e.Reason)
			}
			return "pod " + e.Pod
		}
	}
	return ""
}

// notReady explains why a pod is not ready: terminating, a container not
// running, or its readiness probe failing (the kubelet's latest event).
func (tr *Tracer) notReady(ctx context.Context, pod *corev1.Pod) string {
	if pod.DeletionTimestamp != nil {
		return "terminating"
	}
	for _, c := range pod.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			return fmt.Sprintf("container %s is waiting: %s", c.Name, w.Reason)
		}
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("container %s terminated: %s (exit %d)", c.Name, t.Reason, t.ExitCode)
		}
	}
	events, err := tr.CS.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + pod.Name + ",reason=Unhealthy"})
	if err == nil && len(events.Items) > 0 {
		latest := events.Items[0]
		for _, e := range events.Items[1:] {
			if eventTime(e).After(eventTime(latest)) {
				latest = e
			}
		}
		if strings.HasPrefix(latest.Message, "Readiness probe failed") {
			return strings.TrimSpace(latest.Message)
		}
	}
	for _, c := range pod.Status.ContainerStatuses {
		if !c.Ready {
			return fmt.Sprintf("container %s is running but not ready (its readiness probe has not passed)", c.Name)
		}
	}
	return "not ready"
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}

// similarPods points at pods that share a label key with the selector, to
// make a typo in the selector obvious.
func (tr *Tracer) similarPods(ctx context.Context, svc *corev1.Service) string {
	pods, err := tr.CS.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var hints []string
	seen := map[string]bool{}
	for _, p := range pods.Items {
		for k := range svc.Spec.Selector {
			if v, ok := p.Labels[k]; ok && !seen[k+"="+v] {
				seen[k+"="+v] = true
				hints = append(hints, k+"="+v)
			}
		}
	}
	if len(hints) == 0 {
		return ""
	}
	sort.Strings(hints)
	return "; pods there have " + strings.Join(hints, ", ")
}

// podDestination checks a pod named as the destination.
func (tr *Tracer) podDestination(ctx context.Context, s *state) (Step, error) {
	t := s.target
	pod, err := tr.CS.CoreV1().Pods(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Step{Status: Broken, Summary: fmt.Sprintf("no pod %q in namespace %s", t.Name, t.Namespace)}, nil
	}
	if err != nil {
		return Step{}, fmt.Errorf("read pod %s/%s: %w", t.Namespace, t.Name, err)
	}
	if pod.Status.PodIP != "" {
		s.addresses = []string{pod.Status.PodIP}
	}
	return tr.podStep(ctx, s, pod, t.Port)
}

// podStep checks a destination pod: it has an address, it is ready, and
// one of its containers declares the port.
func (tr *Tracer) podStep(ctx context.Context, s *state, pod *corev1.Pod, port string) (Step, error) {
	ref := fmt.Sprintf("pod %s/%s", pod.Namespace, pod.Name)
	res := &ServiceResult{Namespace: pod.Namespace, Name: pod.Name, Type: "Pod", Endpoints: []Endpoint{}}
	step := Step{Service: res, Status: OK}
	if pod.Status.PodIP == "" {
		step.Status, step.Summary = Broken, ref+" has no IP address yet (phase "+string(pod.Status.Phase)+")"
		return step, nil
	}
	p, _ := strconv.Atoi(port)
	s.port = int32(p)
	e := Endpoint{Address: pod.Status.PodIP, Port: s.port, Pod: pod.Name, Namespace: pod.Namespace, Node: pod.Spec.NodeName,
		Ready: podReady(pod), Serving: podReady(pod), Terminating: pod.DeletionTimestamp != nil}
	if !e.Ready {
		e.Reason = tr.notReady(ctx, pod)
	}
	res.Endpoints = append(res.Endpoints, e)
	s.endpoints, s.pods[e.Address] = res.Endpoints, pod
	declared := ""
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == s.port {
				declared = fmt.Sprintf("container %s declares port %d", c.Name, cp.ContainerPort)
				if cp.Name == "http" || strings.HasPrefix(cp.Name, "http-") {
					s.http = &agent.HTTPProbe{Path: s.target.Path}
				}
			}
		}
	}
	if s.target.HTTP() {
		s.http = &agent.HTTPProbe{Path: s.target.Path, Host: s.target.Host}
	}
	if s.http != nil && s.http.Path == "" {
		s.http.Path = probePath(pod, s.port)
	}
	if declared == "" && port != "" {
		declared = fmt.Sprintf("no container declares port %d (a process may still listen on it)", s.port)
	}
	step.Details = append(step.Details, endpointLine(e))
	if declared != "" {
		step.Details = append(step.Details, declared)
	}
	if !e.Ready {
		step.Status, step.Summary = Warn, fmt.Sprintf("%s is not ready: %s (a direct connection bypasses readiness)", ref, e.Reason)
		return step, nil
	}
	step.Summary = fmt.Sprintf("%s %s is ready", ref, pod.Status.PodIP)
	return step, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// probePath is the path an HTTP probe asks for when the user gave none: the
// pod's own readiness (or liveness) check on that port, whose answer means
// something, or "/".
func probePath(pod *corev1.Pod, port int32) string {
	if pod == nil {
		return "/"
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			n := p.HTTPGet.Port.IntVal
			if p.HTTPGet.Port.Type == intstr.String {
				for _, cp := range c.Ports {
					if cp.Name == p.HTTPGet.Port.StrVal {
						n = cp.ContainerPort
					}
				}
			}
			if n == port && p.HTTPGet.Path != "" {
				return p.HTTPGet.Path
			}
		}
	}
	return "/"
}
