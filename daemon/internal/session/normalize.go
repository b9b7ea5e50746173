package session

import (
	"math"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// What a snapshot, a diff and a verification leave out, because the API
// server or a controller sets it and restoring it is neither possible nor
// meaningful (docs/session.md, "What a diff ignores").
var (
	// serverMetadata are metadata fields the API server sets.
	serverMetadata = []string{"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
		"deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName", "namespace"}
	// controllerAnnotations are annotations controllers write on the
	// objects a session covers.
	controllerAnnotations = []string{"deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation"}
)

// tetherLabelPrefix marks tether's own objects (journals, their keys,
// agent tokens, the gateway, the session itself): not part of a session;
// `tether rollback` handles them.
const tetherLabelPrefix = "tether.dev/"

// Normalize returns the part of obj a session keeps and compares: its
// kind, name, labels, annotations, owner references and finalizers, and
// every field outside metadata but status; server-set metadata,
// controllers' annotations and nulls are left out. obj is not changed.
func Normalize(obj map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		switch k {
		case "status":
			continue
		case "metadata":
			m, _ := v.(map[string]any)
			out[k] = normalizeMeta(m)
		default:
			if v = dropNulls(v); v != nil {
				out[k] = v
			}
		}
	}
	return out
}

func normalizeMeta(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = dropNulls(v)
	}
	for _, k := range serverMetadata {
		delete(out, k)
	}
	if a, ok := out["annotations"].(map[string]any); ok {
		for _, k := range controllerAnnotations {
			delete(a, k)
		}
	}
	for _, k := range []string{"labels", "annotations", "ownerReferences", "finalizers"} {
		if isEmpty(out[k]) {
			delete(out, k)
		}
	}
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

// dropNulls returns a deep copy of v without null values in maps (the API
// server writes `creationTimestamp: null` in pod templates, for one), its
// whole numbers as int64 whether they were decoded as float64 (a snapshot
// read back from JSON) or as integers (client-go's objects).
func dropNulls(v any) any {
	switch t := v.(type) {
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return int64(t)
		}
		return t
	case int:
		return int64(t)
	case int32:
		return int64(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			if e = dropNulls(e); e != nil {
				out[k] = e
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = dropNulls(e)
		}
		return out
	default:
		return v
	}
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// ownedByTether reports whether obj is one of tether's own objects.
func ownedByTether(obj *unstructured.Unstructured) bool {
	for k := range obj.GetLabels() {
		if strings.HasPrefix(k, tetherLabelPrefix) {
			return true
		}
	}
	return false
}

// managedByKubernetes reports whether Kubernetes itself keeps obj (each
// namespace's kube-root-ca.crt, legacy service-account token Secrets):
// it rewrites them on its own and restoring them is its job.
func managedByKubernetes(kind string, obj *unstructured.Unstructured) bool {
	switch kind {
	case "ConfigMap":
		return obj.GetName() == "kube-root-ca.crt"
	case "Secret":
		t, _, _ := unstructured.NestedString(obj.Object, "type")
		return t == "kubernetes.io/service-account-token"
	}
	return false
}

// controllerAnnotationsOf returns the controllers' annotations on obj, to
// keep them on an update that restores the rest.
func controllerAnnotationsOf(obj map[string]any) map[string]string {
	a, _, _ := unstructured.NestedStringMap(obj, "metadata", "annotations")
	out := map[string]string{}
	for _, k := range controllerAnnotations {
		if v, ok := a[k]; ok {
			out[k] = v
		}
	}
	return out
}
