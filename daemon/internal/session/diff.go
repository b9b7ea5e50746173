package session

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The changes a diff reports.
const (
	Modified = "modified"
	Created  = "created" // during the session: rollback deletes it
	Deleted  = "deleted" // during the session: rollback recreates it
)

// Change is one object that differs from its snapshot.
type Change struct {
	Ref
	// Change is Modified, Created or Deleted.
	Change string
	// Paths are the fields that differ, e.g.
	// spec.template.spec.containers[name=app].image; empty for Created and
	// Deleted.
	Paths []string
	// Text is a unified diff of the two YAML forms, Secrets' values shown
	// as their length and hash.
	Text string
}

// Compare returns what differs between the snapshot's objects (before)
// and the cluster's (after), both normalised, keyed by Ref, in the
// rollback's order.
func Compare(before, after map[Ref]map[string]any) []Change {
	scaled := Autoscaled(before)
	refs := map[Ref]bool{}
	for r := range before {
		refs[r] = true
	}
	for r := range after {
		refs[r] = true
	}
	var out []Change
	for r := range refs {
		b, inB := before[r]
		a, inA := after[r]
		var c Change
		switch {
		case inB && !inA:
			c = Change{Ref: r, Change: Deleted}
		case !inB && inA:
			c = Change{Ref: r, Change: Created}
		default:
			paths := FieldPaths(comparable(r, b, scaled), comparable(r, a, scaled))
			if len(paths) == 0 {
				continue
			}
			c = Change{Ref: r, Change: Modified, Paths: paths}
		}
		c.Text = unified(r, forText(r.Kind, comparable(r, b, scaled)), forText(r.Kind, comparable(r, a, scaled)))
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return Less(out[i].Ref, out[j].Ref) })
	return out
}

// comparable is obj as a diff compares it: a Service's cluster IPs are
// the API server's choice (a Service deleted and created again gets new
// ones), so only whether it is headless counts; a workload an HPA of the
// snapshot scales has the HPA's replica count, not the developer's.
func comparable(r Ref, obj map[string]any, scaled map[Ref]bool) map[string]any {
	if obj == nil {
		return obj
	}
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		return obj
	}
	var drop []string
	switch {
	case r.Kind == "Service":
		drop = []string{"clusterIP", "clusterIPs"}
	case scaled[r]:
		drop = []string{"replicas"}
	default:
		return obj
	}
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	sp := make(map[string]any, len(spec))
	for k, v := range spec {
		sp[k] = v
	}
	for _, k := range drop {
		delete(sp, k)
	}
	if r.Kind == "Service" && spec["clusterIP"] == "None" {
		sp["clusterIP"] = "None"
	}
	out["spec"] = sp
	return out
}

// Autoscaled returns the workloads the HPAs among objs scale.
func Autoscaled(objs map[Ref]map[string]any) map[Ref]bool {
	out := map[Ref]bool{}
	for r, o := range objs {
		if r.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		kind, _, _ := unstructured.NestedString(o, "spec", "scaleTargetRef", "kind")
		name, _, _ := unstructured.NestedString(o, "spec", "scaleTargetRef", "name")
		if k, ok := KindOf(kind); ok && k.Workload && name != "" {
			out[Ref{Kind: k.Kind, Name: name}] = true
		}
	}
	return out
}

// FieldPaths lists the paths where a and b differ. List elements that are
// maps with a name are matched by name ("containers[name=app]"), others by
// index; a list of another length with no names is one path.
func FieldPaths(a, b map[string]any) []string {
	var out []string
	walk("", a, b, &out)
	sort.Strings(out)
	return out
}

func walk(path string, a, b any, out *[]string) {
	if reflect.DeepEqual(a, b) {
		return
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		for k := range keys {
			walk(join(path, k), av[k], bv[k], out)
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		if named(av) && named(bv) {
			an, bn := byName(av), byName(bv)
			names := map[string]bool{}
			for n := range an {
				names[n] = true
			}
			for n := range bn {
				names[n] = true
			}
			before := len(*out)
			for n := range names {
				walk(fmt.Sprintf("%s[name=%s]", path, n), an[n], bn[n], out)
			}
			if len(*out) == before {
				// The same elements in another order, or a name twice.
				*out = append(*out, path)
			}
			return
		}
		if len(av) == len(bv) {
			for i := range av {
				walk(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], out)
			}
			return
		}
	}
	*out = append(*out, path)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	if strings.ContainsAny(key, ".[]") {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	return path + "." + key
}

// named reports whether every element of l is a map with a string name.
func named(l []any) bool {
	if len(l) == 0 {
		return false
	}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func byName(l []any) map[string]any {
	out := map[string]any{}
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				out[n] = m
			}
		}
	}
	return out
}

// forText is obj as a diff shows it: a Secret's values replaced by their
// length and a short hash, so that a diff never prints a secret.
func forText(kind string, obj map[string]any) map[string]any {
	if obj == nil || kind != "Secret" {
		return obj
	}
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	if data, ok := obj["data"].(map[string]any); ok {
		red := make(map[string]any, len(data))
		for k, v := range data {
			s, _ := v.(string)
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				raw = []byte(s)
			}
			sum := sha256.Sum256(raw)
			red[k] = fmt.Sprintf("(%d bytes, sha256 %s)", len(raw), hex.EncodeToString(sum[:6]))
		}
		out["data"] = red
	}
	return out
}

// unified is the unified diff of a's and b's YAML, with 3 lines of context.
func unified(r Ref, a, b map[string]any) string {
	al, bl := yamlLines(a), yamlLines(b)
	from, to := "snapshot/"+r.String(), "cluster/"+r.String()
	if a == nil {
		from = "/dev/null"
	}
	if b == nil {
		to = "/dev/null"
	}
	return "--- " + from + "\n+++ " + to + "\n" + hunks(al, bl, 3)
}

func yamlLines(obj map[string]any) []string {
	if obj == nil {
		return nil
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return []string{fmt.Sprintf("(cannot show: %v)", err)}
	}
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}
