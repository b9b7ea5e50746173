package session

import (
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The actions of a rollback's steps.
const (
	ActUpdate  = "update"  // restore the object's fields in place
	ActCreate  = "create"  // recreate an object deleted during the session
	ActDelete  = "delete"  // delete an object created during the session
	ActReplace = "replace" // --force: delete and create, for a change that cannot be undone in place
	ActRefuse  = "refuse"  // a change that cannot be undone in place, without --force
)

// Step is one object a rollback acts on.
type Step struct {
	Ref
	Action string
	// Reason says why an object must be replaced (or is refused).
	Reason string
}

// Plan returns the steps that restore snap from cur (the cluster's objects
// in scope): creates, updates and replaces in Kinds' order, then the
// deletes of objects created during the session in the reverse order. An
// object whose change cannot be undone in place is refused, or replaced
// with force.
func Plan(snap map[Ref]map[string]any, cur map[Ref]*unstructured.Unstructured, force bool) []Step {
	var restore, remove []Step
	for _, c := range Compare(snap, Normalized(cur)) {
		switch c.Change {
		case Deleted:
			restore = append(restore, Step{Ref: c.Ref, Action: ActCreate})
		case Created:
			remove = append(remove, Step{Ref: c.Ref, Action: ActDelete})
		case Modified:
			if why := immutable(c.Kind, snap[c.Ref], cur[c.Ref].Object); why != "" {
				act := ActRefuse
				if force {
					act = ActReplace
				}
				restore = append(restore, Step{Ref: c.Ref, Action: act, Reason: why})
				continue
			}
			restore = append(restore, Step{Ref: c.Ref, Action: ActUpdate})
		}
	}
	for i := len(remove) - 1; i >= 0; i-- {
		restore = append(restore, remove[i])
	}
	return restore
}

// Refused returns the steps of plan that were refused.
func Refused(plan []Step) []Step {
	var out []Step
	for _, s := range plan {
		if s.Action == ActRefuse {
			out = append(out, s)
		}
	}
	return out
}

// immutable says why snapshot (normalised) cannot be restored over cur in
// place, "" when it can: the fields the API server refuses to change.
func immutable(kind string, snapshot, cur map[string]any) string {
	differs := func(path ...string) bool {
		a, _, _ := unstructured.NestedFieldNoCopy(snapshot, path...)
		b, _, _ := unstructured.NestedFieldNoCopy(cur, path...)
		return !reflect.DeepEqual(dropNulls(a), dropNulls(b))
	}
	var fields []string
	check := func(path ...string) {
		if differs(path...) {
			fields = append(fields, strings.Join(path, "."))
		}
	}
	switch kind {
	case "Deployment", "DaemonSet":
		check("spec", "selector")
	case "StatefulSet":
		check("spec", "selector")
		check("spec", "serviceName")
		check("spec", "podManagementPolicy")
		check("spec", "volumeClaimTemplates")
	case "Service":
		a, _, _ := unstructured.NestedString(snapshot, "spec", "clusterIP")
		b, _, _ := unstructured.NestedString(cur, "spec", "clusterIP")
		if (a == "None") != (b == "None") {
			fields = append(fields, fmt.Sprintf("spec.clusterIP (%q, now %q: headless or not)", a, b))
		}
	case "ConfigMap", "Secret":
		if im, _, _ := unstructured.NestedBool(cur, "immutable"); im {
			check("data")
			check("binaryData")
			check("immutable")
		}
		if kind == "Secret" {
			check("type")
		}
	}
	if len(fields) == 0 {
		return ""
	}
	return "changed " + strings.Join(fields, ", ") + ", which cannot be changed back in place; --force deletes and recreates it"
}
