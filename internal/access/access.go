// Package access checks, with SelfSubjectAccessReviews, that the user may
// do what one tether feature needs in a namespace, and lists what is
// missing. Each feature asks for the least it uses, and for one named object
// where the object is known, so a Role that grants a verb on just those
// objects (resourceNames) passes; docs/intercept.md has the Roles.
package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Rule is one permission tether uses.
type Rule struct {
	Verb, Group, Resource, Subresource string
	// Name is the one object the rule is about; "" for every object of the
	// resource (list, create, or a name not known yet).
	Name string
	// PerObject marks a rule tether needs on a named object only (the
	// agent's token Secret, the journal): with no Name it is not checked,
	// as the object is not known yet, rather than demanded on every object.
	PerObject bool
	// Why says what tether uses it for.
	Why string
}

func (r Rule) String() string {
	res := r.Resource
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	if r.Group != "" {
		res += "." + r.Group
	}
	if r.Name != "" {
		return fmt.Sprintf("%s %s %q", r.Verb, res, r.Name)
	}
	return r.Verb + " " + res
}

// Feature is something tether does that needs permissions.
type Feature string

// Features, each with its own least set of rules.
const (
	Intercept Feature = "intercept" // and leave
	// InterceptNoRestart is intercept --no-restart: ephemeral agents in
	// the running pods, the pods marked, the Service's selector changed.
	InterceptNoRestart Feature = "intercept --no-restart"
	Record             Feature = "record"
	Requests           Feature = "requests" // reading recordings: requests, replay
	Rollback           Feature = "rollback"
	RollAll            Feature = "rollback --all"
	Inspect            Feature = "trace, capture and dns"
	// EnvSpec reads a container's environment from its spec (env
	// --source spec); Env also reads its process through an inspection
	// agent (env, env --files).
	EnvSpec Feature = "env --source spec"
	Env     Feature = "env"
	// Gateway is `tether run` with no workload named: it adds, journaled,
	// and then uses the namespace's gateway Deployment.
	Gateway Feature = "run (no workload: the gateway)"
	// The session subcommands (docs/session.md): not in Features, as
	// `tether connect` checks what the Roles of docs/intercept.md give.
	SessionStart    Feature = "session start"
	SessionDiff     Feature = "session diff"
	SessionRollback Feature = "session rollback"
	SessionEnd      Feature = "session end"
)

// SessionResource is a resource a session covers.
type SessionResource struct{ Group, Resource string }

// SessionResources are the resources a session covers, as
// daemon/internal/session.Kinds lists them.
var SessionResources = []SessionResource{
	{"", "configmaps"}, {"", "secrets"}, {"", "services"}, {"networking.k8s.io", "ingresses"},
	{"networking.k8s.io", "networkpolicies"}, {"policy", "poddisruptionbudgets"}, {"apps", "deployments"},
	{"apps", "statefulsets"}, {"apps", "daemonsets"}, {"autoscaling", "horizontalpodautoscalers"},
}

// SessionObject is one object --include names.
type SessionObject struct{ Group, Resource, Name string }

// sessionHead is the Secret holding a namespace's session
// (daemon/internal/session.HeadName).
const sessionHead = "tether-session"

// Features lists every feature, in the order `tether connect` reports them.
var Features = []Feature{Intercept, Record, Requests, Rollback, RollAll, Inspect, EnvSpec, Env, Gateway, InterceptNoRestart}

// Optional features have a Role of their own in docs/intercept.md
// (tether-no-restart): `tether connect` does not count them as missing,
// `tether doctor` reports them with the others.
var Optional = map[Feature]bool{InterceptNoRestart: true}

// Objects names what a check is about, where known.
type Objects struct {
	// Kind of the workload: "Deployment" or "StatefulSet"; "" for both.
	Kind string
	// Workload, Secret (the agent's token), Journal (the journal
	// ConfigMap) and JournalKey (the Secret whose key authenticates the
	// journal) are object names; "" when not known.
	Workload, Secret, Journal, JournalKey string
	// ConfigMaps and Secrets a container's environment names (env).
	ConfigMaps, Secrets []string
	// Gateway: the journal is a gateway's, whose rollback deletes the
	// Deployment instead of restoring a template.
	Gateway bool
	// Include are the objects a session covers when it names them (none:
	// every object of SessionResources); SessionChunks the names of its
	// snapshot's Secrets, once known.
	Include       []SessionObject
	SessionChunks []string
	// NoRestart: the journal is an intercept --no-restart's, whose
	// rollback restores a Service's selector and the pods' labels, and no
	// template.
	NoRestart bool
}

// sessionRead is what reading the objects in a session's scope needs.
func (o Objects) sessionRead(why string) []Rule {
	var out []Rule
	if len(o.Include) > 0 {
		for _, n := range o.Include {
			out = append(out, Rule{Verb: "get", Group: n.Group, Resource: n.Resource, Name: n.Name, Why: why})
		}
		return out
	}
	for _, r := range SessionResources {
		out = append(out, Rule{Verb: "list", Group: r.Group, Resource: r.Resource, Why: why})
	}
	return out
}

// sessionWrite is what restoring the objects in a session's scope needs.
func (o Objects) sessionWrite() []Rule {
	var out []Rule
	for _, r := range SessionResources {
		for _, v := range []struct{ verb, why string }{
			{"update", "restore what changed"}, {"create", "recreate what was deleted"}, {"delete", "delete what was created"}} {
			out = append(out, Rule{Verb: v.verb, Group: r.Group, Resource: r.Resource, Why: v.why})
		}
	}
	return out
}

func (o Objects) sessionChunks(verb, why string) []Rule {
	var out []Rule
	for _, c := range o.SessionChunks {
		out = append(out, Rule{Verb: verb, Resource: "secrets", Name: c, PerObject: true, Why: why})
	}
	return out
}

func (o Objects) workload(verb, why string) []Rule {
	var out []Rule
	for _, k := range []struct{ kind, resource string }{{"Deployment", "deployments"}, {"StatefulSet", "statefulsets"}} {
		if o.Kind == "" || o.Kind == k.kind {
			out = append(out, Rule{Verb: verb, Group: "apps", Resource: k.resource, Name: o.Workload, Why: why})
		}
	}
	return out
}

func (o Objects) secret(verb, why string) Rule {
	return Rule{Verb: verb, Resource: "secrets", Name: o.Secret, PerObject: true, Why: why}
}

func (o Objects) journal(verb, why string) Rule {
	return Rule{Verb: verb, Resource: "configmaps", Name: o.Journal, PerObject: true, Why: why}
}

func (o Objects) journalKey(verb, why string) Rule {
	return Rule{Verb: verb, Resource: "secrets", Name: o.JournalKey, PerObject: true, Why: why}
}

// Rules returns what feature f needs, about the objects o names.
func Rules(f Feature, o Objects) []Rule {
	var r []Rule
	switch f {
	case Intercept, Record:
		r = append(r, o.workload("get", "read the workload")...)
		r = append(r, o.workload("update", "add the agent to its pod template (and remove it when an intercept fails)")...)
		r = append(r,
			Rule{Verb: "list", Resource: "pods", Why: "follow the workload's pods during the rollout"},
			Rule{Verb: "get", Resource: "pods", Why: "check that the Service's endpoints run the agent"},
			Rule{Verb: "list", Resource: "services", Why: "find the Service that selects the workload"},
			Rule{Verb: "get", Resource: "services", Why: "read the Service to retarget"},
			Rule{Verb: "update", Resource: "services", Why: "point a numeric targetPort at the agent (and back)"},
			Rule{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Why: "wait until the Service routes to the agents"},
			Rule{Verb: "list", Resource: "events", Why: "say why the rollout's pods are not created"},
			Rule{Verb: "create", Resource: "secrets", Why: "create the agent's token"},
			o.secret("get", "read the agent's token"),
			o.secret("delete", "remove the agent's token when the intercept fails"),
			Rule{Verb: "create", Resource: "configmaps", Why: "journal changes before making them"},
			o.journal("get", "read the journal"),
			o.journal("update", "journal changes before making them"),
			o.journal("delete", "remove the journal when the intercept fails"),
			o.journalKey("get", "read the key that authenticates the journal"),
			o.journalKey("delete", "remove the journal's key when the intercept fails"),
		)
		if f == Intercept {
			r = append(r, portForward("open the tunnel to each agent")...)
		}
	case InterceptNoRestart:
		r = append(r, o.workload("get", "read the workload")...)
		r = append(r,
			Rule{Verb: "list", Resource: "pods", Why: "find the workload's running pods"},
			Rule{Verb: "watch", Resource: "pods", Why: "follow the workload's pods as they come and go"},
			Rule{Verb: "get", Resource: "pods", Why: "follow each agent as it starts"},
			Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers", Why: "add the agent to each running pod"},
			Rule{Verb: "patch", Resource: "pods", Why: "mark the pods whose agent answers"},
			Rule{Verb: "update", Resource: "pods", Why: "unmark the pods (leave, an agent that stops answering)"},
			Rule{Verb: "list", Resource: "services", Why: "find the Service that selects the workload"},
			Rule{Verb: "get", Resource: "services", Why: "read the Service to retarget"},
			Rule{Verb: "update", Resource: "services", Why: "select the marked pods on the agent's port (and back)"},
			Rule{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Why: "wait until the Service routes to the marked pods"},
			Rule{Verb: "create", Resource: "secrets", Why: "keep each new agent's rotated token"},
			Rule{Verb: "get", Resource: "secrets", Why: "reuse the agents an earlier intercept added (their tokens, one Secret per pod)"},
			Rule{Verb: "create", Resource: "configmaps", Why: "journal changes before making them"},
			o.journal("get", "read the journal"),
			o.journal("update", "journal changes before making them"),
			o.journal("delete", "remove the journal at leave"),
			o.journalKey("get", "read the key that authenticates the journal"),
			o.journalKey("delete", "remove the journal's key at leave"),
		)
		r = append(r, portForward("open the tunnel to each agent")...)
	case Requests:
		r = append(r, o.workload("get", "read the workload")...)
		r = append(r,
			Rule{Verb: "list", Resource: "pods", Why: "find the pods running the agent"},
			o.secret("get", "read the agent's token"),
		)
		r = append(r, portForward("read each agent's recording")...)
	case Rollback, RollAll:
		if f == Rollback && o.Gateway {
			r = append(r,
				Rule{Verb: "get", Group: "apps", Resource: "deployments", Name: o.Workload, PerObject: true, Why: "check that the gateway is the one tether journaled"},
				Rule{Verb: "delete", Group: "apps", Resource: "deployments", Name: o.Workload, PerObject: true, Why: "remove the gateway"},
				o.secret("delete", "remove the gateway's token"),
				o.journal("get", "read the journal"),
				o.journal("delete", "remove the journal"),
				o.journalKey("get", "read the key that authenticates the journal"),
				o.journalKey("delete", "remove the journal's key"),
			)
			break
		}
		if f == Rollback && o.NoRestart {
			r = append(r,
				Rule{Verb: "get", Resource: "services", Why: "compare the Service's selector and ports"},
				Rule{Verb: "update", Resource: "services", Why: "restore the Service's selector and ports"},
				Rule{Verb: "get", Resource: "pods", Why: "compare the marked pods' labels"},
				Rule{Verb: "update", Resource: "pods", Why: "remove the marks"},
				o.journal("get", "read the journal"),
				o.journal("delete", "remove the journal"),
				o.journalKey("get", "read the key that authenticates the journal"),
				o.journalKey("delete", "remove the journal's key"),
			)
			break
		}
		if f == RollAll {
			r = append(r, Rule{Verb: "list", Resource: "configmaps", Why: "find every journal"})
		}
		r = append(r, o.workload("get", "read the workload")...)
		r = append(r, o.workload("update", "restore its pod template")...)
		r = append(r,
			Rule{Verb: "get", Resource: "services", Why: "compare a retargeted Service's ports"},
			Rule{Verb: "update", Resource: "services", Why: "restore a retargeted Service's ports"},
			o.secret("delete", "remove the agent's token"),
			o.journal("get", "read the journal"),
			o.journal("delete", "remove the journal"),
			o.journalKey("get", "read the key that authenticates the journal"),
			o.journalKey("delete", "remove the journal's key"),
		)
	case Inspect:
		r = append(r,
			Rule{Verb: "get", Resource: "pods", Why: "read the pod to inspect"},
			Rule{Verb: "list", Resource: "pods", Why: "find a workload's pods and a Service's endpoints"},
			Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers", Why: "add the inspection agent"},
			// Reusing an agent also needs get on its token Secret,
			// <container>.<pod>: optional (without it a new agent is
			// added), and per pod, so not checked here.
			Rule{Verb: "create", Resource: "secrets", Why: "keep each new inspection agent's rotated token"},
			Rule{Verb: "get", Resource: "services", Why: "trace a Service"},
			Rule{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices", Why: "trace a Service's endpoints"},
		)
		r = append(r, portForward("reach the inspection agent")...)
	case Gateway:
		r = append(r,
			Rule{Verb: "get", Group: "apps", Resource: "deployments", Name: o.Workload, PerObject: true, Why: "find the namespace's gateway"},
			Rule{Verb: "create", Group: "apps", Resource: "deployments", Why: "add the gateway"},
			Rule{Verb: "delete", Group: "apps", Resource: "deployments", Name: o.Workload, PerObject: true, Why: "remove the gateway when adding it fails"},
			Rule{Verb: "list", Resource: "pods", Why: "find the gateway's pod and the cluster's pod addresses"},
			Rule{Verb: "list", Resource: "services", Why: "find the cluster's Service addresses"},
			Rule{Verb: "create", Resource: "configmaps", Why: "journal the gateway before adding it"},
			o.journal("get", "read the journal"),
			o.journal("update", "journal the gateway before adding it"),
			o.journal("delete", "remove the journal when adding the gateway fails"),
			Rule{Verb: "create", Resource: "secrets", Why: "create the gateway's token and the journal's key"},
			o.secret("get", "read the gateway's token"),
			o.secret("delete", "remove the gateway's token when adding it fails"),
			o.journalKey("get", "read the key that authenticates the journal"),
			o.journalKey("delete", "remove the journal's key when adding the gateway fails"),
		)
		r = append(r, portForward("reach the gateway's agent")...)
	case SessionStart:
		r = append(r, o.sessionRead("snapshot the objects")...)
		r = append(r,
			Rule{Verb: "create", Resource: "secrets", Why: "keep the snapshot"},
			Rule{Verb: "get", Resource: "secrets", Name: sessionHead, Why: "name the session a namespace has already"},
			Rule{Verb: "update", Resource: "secrets", Name: sessionHead, Why: "mark the snapshot complete"},
			Rule{Verb: "delete", Resource: "secrets", Name: sessionHead, Why: "remove a snapshot that could not be written"},
		)
	case SessionDiff, SessionRollback:
		r = append(r, o.sessionRead("compare the objects with the snapshot")...)
		r = append(r, Rule{Verb: "get", Resource: "secrets", Name: sessionHead, Why: "read the session"})
		r = append(r, o.sessionChunks("get", "read the snapshot")...)
		if f == SessionRollback {
			r = append(r, o.sessionWrite()...)
			r = append(r, Rule{Verb: "list", Resource: "configmaps", Why: "find tether's own changes made during the session (its journals)"})
		}
	case SessionEnd:
		r = append(r,
			Rule{Verb: "get", Resource: "secrets", Name: sessionHead, Why: "read the session"},
			Rule{Verb: "delete", Resource: "secrets", Name: sessionHead, Why: "drop the session"},
		)
		r = append(r, o.sessionChunks("delete", "drop the snapshot")...)
	case EnvSpec, Env:
		if o.Workload != "" {
			r = append(r, o.workload("get", "find the workload's pods")...)
		}
		r = append(r,
			Rule{Verb: "get", Resource: "pods", Why: "read the pod's spec"},
			Rule{Verb: "list", Resource: "pods", Why: "pick a ready pod of a workload"},
			Rule{Verb: "list", Resource: "services", Why: "compute the service link variables"},
		)
		for _, n := range o.ConfigMaps {
			r = append(r, Rule{Verb: "get", Resource: "configmaps", Name: n, PerObject: true, Why: "resolve the variables it gives"})
		}
		for _, n := range o.Secrets {
			r = append(r, Rule{Verb: "get", Resource: "secrets", Name: n, PerObject: true, Why: "resolve the variables it gives"})
		}
		if f == Env {
			r = append(r,
				Rule{Verb: "update", Resource: "pods", Subresource: "ephemeralcontainers", Why: "add the inspection agent that reads the process"},
				Rule{Verb: "create", Resource: "secrets", Why: "keep each new inspection agent's rotated token"},
			)
			r = append(r, portForward("reach the inspection agent")...)
		}
	}
	return r
}

// portForward is what a port-forward needs: the WebSocket upgrade is a GET
// (authorized as get pods/portforward), the SPDY fallback a POST (create).
func portForward(why string) []Rule {
	return []Rule{
		{Verb: "get", Resource: "pods", Subresource: "portforward", Why: why},
		{Verb: "create", Resource: "pods", Subresource: "portforward", Why: why},
	}
}

// Needed lists what every feature but the Optional ones needs, each rule
// once, with names where o gives them.
func Needed(o Objects) []Rule {
	var core []Feature
	for _, f := range Features {
		if !Optional[f] {
			core = append(core, f)
		}
	}
	return NeededFor(core, o)
}

// NeededFor lists what the features fs need, each rule once.
func NeededFor(fs []Feature, o Objects) []Rule {
	var out []Rule
	seen := map[Rule]bool{}
	for _, f := range fs {
		for _, r := range Rules(f, o) {
			k := r
			k.Why = ""
			if !seen[k] {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// Missing returns the rules the user lacks in namespace, in the given
// order. A PerObject rule without a Name is skipped. The reviews run
// concurrently: one round trip, not one per rule.
func Missing(ctx context.Context, cs kubernetes.Interface, namespace string, rules []Rule) ([]Rule, error) {
	allowed := make([]bool, len(rules))
	errs := make([]error, len(rules))
	var wg sync.WaitGroup
	for i, r := range rules {
		if r.PerObject && r.Name == "" {
			allowed[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authv1.ResourceAttributes{
					Namespace: namespace, Verb: r.Verb, Group: r.Group, Resource: r.Resource, Subresource: r.Subresource, Name: r.Name,
				},
			}}
			resp, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("check permission %s: %w", r, err)
				return
			}
			allowed[i] = resp.Status.Allowed
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var missing []Rule
	for i, r := range rules {
		if !allowed[i] {
			missing = append(missing, r)
		}
	}
	return missing, nil
}

// Describe formats missing rules for people, one per line.
func Describe(missing []Rule) string {
	var b strings.Builder
	for _, r := range missing {
		fmt.Fprintf(&b, "  - %s (to %s)\n", r, r.Why)
	}
	return b.String()
}
