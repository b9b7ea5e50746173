// Package trace explains where a connection from a pod goes and where it
// breaks: the DNS lookups the pod makes, the Service and its endpoints, the
// NetworkPolicies on the way, and live probes from the pod's network
// namespace. Probes run through an inspection agent in the source pod
// (Prober); everything else is read from the API.
package trace

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Kinds of Target.
const (
	KindName    = "name"    // a DNS name, resolved as the pod resolves it
	KindIP      = "ip"      // an address
	KindService = "service" // svc/NAME
	KindPod     = "pod"     // pod/NAME:PORT
)

// usage is what every parse error ends with.
const usage = "write a DNS name, svc/NAME[:PORT], pod/NAME:PORT, host:port or a URL"

// ParseTarget reads TO; namespace is where svc/ and pod/ names live unless
// the Service is written NAME.NAMESPACE.
func ParseTarget(s, namespace string) (Target, error) {
	t := Target{Input: s}
	if s == "" {
		return t, errdefs.User("no destination: %s", usage)
	}
	if strings.Contains(s, "://") {
		return parseURL(t, s)
	}
	if kind, rest, ok := strings.Cut(s, "/"); ok {
		name, port, _ := strings.Cut(rest, ":")
		switch strings.ToLower(kind) {
		case "svc", "service", "services":
			t.Kind, t.Namespace = KindService, namespace
			if n, ns, ok := strings.Cut(name, "."); ok {
				name, t.Namespace = n, ns
			}
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
				return t, errdefs.User("%q: %q is not a Service name: %s", s, name, errs[0])
			}
			if port != "" {
				if err := checkPort(s, port, true); err != nil {
					return t, err
				}
			}
		case "pod", "pods", "po":
			t.Kind, t.Namespace = KindPod, namespace
			if port == "" {
				return t, errdefs.User("%q: a pod destination needs a port: write pod/NAME:PORT", s)
			}
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				return t, errdefs.User("%q: %q is not a pod name: %s", s, name, errs[0])
			}
			if err := checkPort(s, port, false); err != nil {
				return t, err
			}
		default:
			return t, errdefs.User("%q: tether traces to Services and pods, not %s: %s", s, kind, usage)
		}
		t.Name, t.Port = name, port
		return t, nil
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
		if err := checkPort(s, port, false); err != nil {
			return t, err
		}
	} else if strings.Count(s, ":") == 1 {
		return t, errdefs.User("%q: %v: %s", s, err, usage)
	}
	t.Host, t.Port = strings.TrimSuffix(host, "."), port
	if strings.HasSuffix(host, ".") {
		t.Host = host // a trailing dot is meaningful: the name is absolute
	}
	return t, classifyHost(&t, s)
}

func parseURL(t Target, s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return t, errdefs.User("%q is not a URL: %v", s, err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return t, errdefs.User("%q: tether probes http:// and https:// URLs; for other protocols write host:port", s)
	}
	if u.Hostname() == "" {
		return t, errdefs.User("%q: the URL has no host", s)
	}
	t.Scheme, t.Host, t.Port, t.Path = u.Scheme, u.Hostname(), u.Port(), u.RequestURI()
	if t.Port == "" {
		t.Port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	} else if err := checkPort(s, t.Port, false); err != nil {
		return t, err
	}
	return t, classifyHost(&t, s)
}

func classifyHost(t *Target, input string) error {
	if ip := net.ParseIP(t.Host); ip != nil {
		t.Kind = KindIP
		return nil
	}
	t.Kind = KindName
	if errs := validation.IsDNS1123Subdomain(strings.ToLower(strings.TrimSuffix(t.Host, "."))); len(errs) > 0 {
		return errdefs.User("%q: %q is neither an address nor a DNS name: %s", input, t.Host, errs[0])
	}
	return nil
}

// checkPort accepts 1-65535, and a port name where named is true.
func checkPort(input, port string, named bool) error {
	n, err := strconv.Atoi(port)
	if err == nil {
		if n < 1 || n > 65535 {
			return errdefs.User("%q: port %d is out of range 1-65535", input, n)
		}
		return nil
	}
	if named && len(validation.IsValidPortName(port)) == 0 {
		return nil
	}
	if named {
		return errdefs.User("%q: %q is neither a port number nor a port name", input, port)
	}
	return errdefs.User("%q: port %q is not a number", input, port)
}
