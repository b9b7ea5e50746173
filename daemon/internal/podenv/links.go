package podenv

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// kubernetesLinks names the variables of the kubernetes Service in
// warnings; Merge knows them by their prefixes.
const kubernetesLinks = "KUBERNETES_SERVICE_HOST"

// links are the Service link variables of a container.
type links struct {
	vars  []Var // sorted by name
	index map[string]int
}

func (l links) value(name string) (string, bool) {
	i, ok := l.index[name]
	if !ok {
		return "", false
	}
	return l.vars[i].Value, true
}

// serviceLinks computes the variables the kubelet derives from Services:
// those of the "kubernetes" Service of namespace default always, and those
// of every Service of the pod's namespace when enableServiceLinks is true
// or unset (a Service of the pod's namespace named kubernetes wins over
// default's). Headless and ExternalName Services have none. A Service
// created after the container started was not there when the kubelet
// computed them, and is left out.
func (r *resolver) serviceLinks() (links, error) {
	byName := map[string]corev1.Service{}
	started := r.startedAt()
	add := func(svcs []corev1.Service, only string) {
		for _, s := range svcs {
			if only != "" && s.Name != only {
				continue
			}
			if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
				continue
			}
			if !started.IsZero() && s.CreationTimestamp.Time.After(started) {
				continue
			}
			byName[s.Name] = s
		}
	}
	if r.pod.Spec.EnableServiceLinks == nil || *r.pod.Spec.EnableServiceLinks {
		svcs, err := r.lookup.Services(r.ctx, r.pod.Namespace)
		if err != nil {
			return links{}, fmt.Errorf("list the services of namespace %s (for the service link variables): %w", r.pod.Namespace, err)
		}
		add(svcs, "")
	}
	if _, ok := byName["kubernetes"]; !ok && r.pod.Namespace != "default" {
		svcs, err := r.lookup.Services(r.ctx, "default")
		switch {
		case apierrors.IsForbidden(err):
			r.warnf("%s: you may not list the services of namespace default: the KUBERNETES_SERVICE_* variables, which every container gets, are left out", kubernetesLinks)
		case err != nil:
			return links{}, fmt.Errorf("read service kubernetes of namespace default: %w", err)
		default:
			add(svcs, "kubernetes")
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	l := links{index: map[string]int{}}
	for _, n := range names {
		for _, v := range serviceVars(byName[n]) {
			if _, dup := l.index[v.Name]; dup {
				continue
			}
			l.index[v.Name] = len(l.vars)
			l.vars = append(l.vars, v)
		}
	}
	sort.Slice(l.vars, func(i, j int) bool { return l.vars[i].Name < l.vars[j].Name })
	for i, v := range l.vars {
		l.index[v.Name] = i
	}
	return l, nil
}

// serviceVars are one Service's variables: NAME_SERVICE_HOST, _PORT and a
// _PORT_<PORTNAME> per named port, and the Docker link variables.
func serviceVars(s corev1.Service) []Var {
	if len(s.Spec.Ports) == 0 {
		return nil
	}
	prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
	src := "service link service/" + s.Name
	ip := s.Spec.ClusterIP
	out := []Var{
		{Name: prefix + "_SERVICE_HOST", Value: ip},
		{Name: prefix + "_SERVICE_PORT", Value: strconv.Itoa(int(s.Spec.Ports[0].Port))},
	}
	for _, p := range s.Spec.Ports {
		if p.Name != "" {
			out = append(out, Var{Name: prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), Value: strconv.Itoa(int(p.Port))})
		}
	}
	for i, p := range s.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		lower := strings.ToLower(proto)
		url := lower + "://" + net.JoinHostPort(ip, strconv.Itoa(int(p.Port)))
		if i == 0 {
			out = append(out, Var{Name: prefix + "_PORT", Value: url})
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		out = append(out,
			Var{Name: pp, Value: url},
			Var{Name: pp + "_PROTO", Value: lower},
			Var{Name: pp + "_PORT", Value: strconv.Itoa(int(p.Port))},
			Var{Name: pp + "_ADDR", Value: ip},
		)
	}
	for i := range out {
		out[i].Source = src
	}
	return out
}
