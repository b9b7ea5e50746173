package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Reasons an intercept could not receive the traffic it promises. The agent
// takes over a port only where the Service's cluster IP sends it (kube-proxy
// rewrites to the targetPort, which then names the agent); anything that
// reaches the app's port without that rewrite bypasses the agent.
var (
	ErrHeadless     = errdefs.New(errdefs.ErrUser, "SERVICE_HEADLESS", "the Service is headless")
	ErrExternalName = errdefs.New(errdefs.ErrUser, "SERVICE_EXTERNAL_NAME", "the Service is an ExternalName")
	ErrHostNetwork  = errdefs.New(errdefs.ErrUser, "HOST_NETWORK", "the workload uses the host's network")
)

// checkReachable refuses what an agent in the pod template cannot take
// traffic for through svc.
func checkReachable(tmpl *corev1.PodTemplateSpec, svc *corev1.Service) error {
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return errdefs.Withf(ErrExternalName, "service %s is of type ExternalName: it is a DNS alias for %s and sends no traffic to pods, "+
			"so an agent there would receive nothing; intercept through a Service that selects the workload's pods", svc.Name, svc.Spec.ExternalName)
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		return errdefs.Withf(ErrHeadless, "service %s is headless (clusterIP: None): its callers resolve the pods' IPs and connect "+
			"straight to the app's port, which stays the app's, so an intercept would receive nothing. "+
			"Intercept through a Service with a cluster IP that selects the same pods (callers must use that Service's name), "+
			"or make %s a ClusterIP Service", svc.Name, svc.Name)
	case tmpl.Spec.HostNetwork:
		return errdefs.Withf(ErrHostNetwork, "the workload's pods use hostNetwork: they share the node's network, so the agent would "+
			"listen on the node's interfaces and callers reach the app's port on the node without passing the agent; "+
			"tether cannot intercept it (a copy of the workload without hostNetwork can be intercepted)")
	}
	return nil
}

// SecretName is the Secret holding the agent token of the workload of kind
// (Deployment, StatefulSet) and name. The kind is part of the name: a
// Deployment and a StatefulSet of the same name have separate tokens, and
// rolling back one must not delete the other's.
func SecretName(kind, name string) string {
	return "tether-agent-" + strings.ToLower(kind) + "-" + name
}

// TokenSecret returns the name of the Secret the agent of spec reads its
// token from, if spec has the agent: agents added by older versions used
// other names, so readers ask the pod spec rather than SecretName.
func TokenSecret(spec *corev1.PodSpec) (string, bool) {
	for _, v := range spec.Volumes {
		if v.Name == TokenVolume && v.Secret != nil {
			return v.Secret.SecretName, true
		}
	}
	return "", false
}

// ReachableServices drops the headless Services from svcs when another
// remains: a StatefulSet's governing headless Service beside its ClusterIP
// Service is no reason to refuse, the intercept goes through the latter.
func ReachableServices(svcs []corev1.Service) []corev1.Service {
	var out []corev1.Service
	for _, s := range svcs {
		if s.Spec.ClusterIP != corev1.ClusterIPNone && s.Spec.Type != corev1.ServiceTypeExternalName {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return svcs // let Build say why none can be intercepted
	}
	return out
}
