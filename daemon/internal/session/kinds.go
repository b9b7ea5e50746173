// Package session snapshots, in the cluster, the objects of a namespace a
// developer may change while debugging, and later says what changed since
// (diff) and puts it back exactly (rollback): snapshot, normalise, diff, the
// plan of the restore and its verification. docs/session.md is the
// user-facing side.
package session

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Kind is one kind of object a session covers.
type Kind struct {
	// Kind is the API kind ("Deployment"); Lower its lower case, as in
	// object references ("deployment/orders").
	Kind, Lower string
	GVR         schema.GroupVersionResource
	// Workload: restoring it starts a rollout to wait for.
	Workload bool
	aliases  []string
}

// Kinds are the kinds a session covers, in the order a rollback restores
// them: what workloads read (ConfigMaps, Secrets) before the Services and
// policies in front of them, the workloads after, their autoscalers last.
// Objects created during the session are deleted in the reverse order,
// after every workload has rolled back off them.
var Kinds = []Kind{
	{Kind: "ConfigMap", Lower: "configmap", GVR: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, aliases: []string{"cm", "configmaps"}},
	{Kind: "Secret", Lower: "secret", GVR: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, aliases: []string{"secrets"}},
	{Kind: "Service", Lower: "service", GVR: schema.GroupVersionResource{Version: "v1", Resource: "services"}, aliases: []string{"svc", "services"}},
	{Kind: "Ingress", Lower: "ingress", GVR: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}, aliases: []string{"ing", "ingresses"}},
	{Kind: "NetworkPolicy", Lower: "networkpolicy", GVR: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}, aliases: []string{"netpol", "networkpolicies"}},
	{Kind: "PodDisruptionBudget", Lower: "poddisruptionbudget", GVR: schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}, aliases: []string{"pdb", "poddisruptionbudgets"}},
	{Kind: "Deployment", Lower: "deployment", GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Workload: true, aliases: []string{"deploy", "deployments"}},
	{Kind: "StatefulSet", Lower: "statefulset", GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, Workload: true, aliases: []string{"sts", "statefulsets"}},
	{Kind: "DaemonSet", Lower: "daemonset", GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, Workload: true, aliases: []string{"ds", "daemonsets"}},
	{Kind: "HorizontalPodAutoscaler", Lower: "horizontalpodautoscaler", GVR: schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}, aliases: []string{"hpa", "horizontalpodautoscalers"}},
}

// KindOf returns the Kind named by kind, an API kind or one of kubectl's
// names for it ("deploy", "svc", "cm"), in any case.
func KindOf(kind string) (Kind, bool) {
	k := strings.ToLower(kind)
	for _, c := range Kinds {
		if k == c.Lower {
			return c, true
		}
		for _, a := range c.aliases {
			if k == a {
				return c, true
			}
		}
	}
	return Kind{}, false
}

// kindByName returns the Kind whose API kind is kind.
func kindByName(kind string) Kind {
	for _, c := range Kinds {
		if c.Kind == kind {
			return c
		}
	}
	panic("session: unknown kind " + kind)
}

// Ref names one object of a session's kinds.
type Ref struct {
	Kind, Name string // Kind is the API kind
}

func (r Ref) String() string { return kindByName(r.Kind).Lower + "/" + r.Name }

// ParseRefs parses --include's KIND/NAME list.
func ParseRefs(refs []string) ([]Ref, error) {
	var out []Ref
	for _, s := range refs {
		kind, name, ok := strings.Cut(s, "/")
		if !ok || kind == "" || name == "" {
			return nil, errdefs.User("--include %q: want KIND/NAME, e.g. deployment/orders or cm/orders-config", s)
		}
		k, ok := KindOf(kind)
		if !ok {
			return nil, errdefs.User("--include %q: a session covers %s, not %q", s, kindList(), kind)
		}
		out = append(out, Ref{Kind: k.Kind, Name: name})
	}
	return out, nil
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = k.Lower
	}
	return strings.Join(names, ", ")
}

// Less orders refs as a rollback restores them: by kind (Kinds' order),
// then by name.
func Less(a, b Ref) bool {
	ia, ib := kindIndex(a.Kind), kindIndex(b.Kind)
	if ia != ib {
		return ia < ib
	}
	return a.Name < b.Name
}

func kindIndex(kind string) int {
	for i, k := range Kinds {
		if k.Kind == kind {
			return i
		}
	}
	panic(fmt.Sprintf("session: unknown kind %q", kind))
}
