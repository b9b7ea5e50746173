// Package podenv computes a container's environment from its pod's spec the
// way the kubelet does when it starts the container: the Service link
// variables, envFrom in order, env in order with valueFrom and $(VAR)
// expansion, with the kubelet's precedence. It knows neither the image's
// ENV nor the variables the runtime adds (PATH, HOSTNAME): those are only
// in the running process (see Merge).
package podenv

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Var is one variable of the container's environment.
type Var struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source says where the value comes from: "env", "configmap/app key
	// DB_HOST", "secret/creds key token", "fieldRef metadata.name",
	// "resourceFieldRef limits.memory", "service link service/db",
	// "image", "runtime".
	Source string `json:"source"`
	// Secret: the value comes from a Secret.
	Secret bool `json:"secret,omitempty"`
}

// Lookup reads the objects a container's environment refers to. A missing
// object is an error for which apierrors.IsNotFound holds.
type Lookup interface {
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	// Services lists the Services of a namespace.
	Services(ctx context.Context, namespace string) ([]corev1.Service, error)
	// Node reads a node (for its allocatable resources: a resourceFieldRef
	// to a limit the container does not set).
	Node(ctx context.Context, name string) (*corev1.Node, error)
}

// Options change how Resolve computes, as the kubelet's version does.
type Options struct {
	// StrictNames: the kubelet skips envFrom keys that are no C-like
	// variable name ([-._a-zA-Z][-._a-zA-Z0-9]*), as kubelets before 1.32
	// do. From 1.32 (RelaxedEnvironmentVariableValidation on by default)
	// every ConfigMap or Secret key is a valid name, and none is skipped.
	StrictNames bool
}

// Result is a resolved environment.
type Result struct {
	// Vars in a stable order: envFrom's (each source's keys sorted), then
	// env's as declared, then the Service links, sorted; a name defined
	// again keeps its first place and takes the later value. (The kubelet
	// hands the runtime its variables in map order, so no order is the
	// process's.)
	Vars []Var
	// Warnings say where the result may differ from what the process was
	// given, and which keys the kubelet skipped.
	Warnings []string
	// LeftOut are the variables the spec names but tether could not
	// compute exactly, by name, with their source (for Merge: the
	// process has them).
	LeftOut map[string]string `json:"-"`
}

// resolver holds one resolution's state.
type resolver struct {
	ctx       context.Context
	pod       *corev1.Pod
	container *corev1.Container
	lookup    Lookup
	opts      Options

	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	missing    map[string]bool // "configmap/x", "secret/x": not found

	vars     []Var
	index    map[string]int // name -> position in vars
	warnings []string
	leftOut  map[string]string
}

// Resolve computes the environment the kubelet gives container (a
// container of pod, by name) when it starts it, from the objects as they
// are now. It returns an error only when an object cannot be read for
// another reason than its absence (no permission, the API down).
func Resolve(ctx context.Context, pod *corev1.Pod, container string, lookup Lookup, opts Options) (Result, error) {
	c := findContainer(pod, container)
	if c == nil {
		return Result{}, fmt.Errorf("pod %s has no container %q", pod.Name, container)
	}
	r := &resolver{ctx: ctx, pod: pod, container: c, lookup: lookup, opts: opts,
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, missing: map[string]bool{},
		index: map[string]int{}, leftOut: map[string]string{}}
	links, err := r.serviceLinks()
	if err != nil {
		return Result{}, err
	}
	for _, ef := range c.EnvFrom {
		if err := r.envFrom(ef); err != nil {
			return Result{}, err
		}
	}
	// A value's $(NAME) sees what is defined so far (envFrom and the env
	// entries before it), then the Service links.
	lookupVar := func(name string) (string, bool) {
		if i, ok := r.index[name]; ok {
			return r.vars[i].Value, true
		}
		v, ok := links.value(name)
		return v, ok
	}
	for _, e := range c.Env {
		v, ok, err := r.envVar(e, lookupVar)
		if err != nil {
			return Result{}, err
		}
		if ok {
			r.set(v)
		}
	}
	// The links come last and never replace a variable of the container.
	for _, v := range links.vars {
		if _, ok := r.index[v.Name]; !ok {
			r.set(v)
		}
	}
	return Result{Vars: r.vars, Warnings: r.warnings, LeftOut: r.leftOut}, nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

// set defines v, replacing an earlier value in its place.
func (r *resolver) set(v Var) {
	if i, ok := r.index[v.Name]; ok {
		r.vars[i] = v
		return
	}
	r.index[v.Name] = len(r.vars)
	r.vars = append(r.vars, v)
}

func (r *resolver) warnf(format string, a ...any) {
	r.warnings = append(r.warnings, fmt.Sprintf(format, a...))
}

// envFrom adds every key of a ConfigMap or Secret, with the prefix; keys
// that are no valid variable name are skipped, as the kubelet does.
func (r *resolver) envFrom(ef corev1.EnvFromSource) error {
	var (
		kind, name string
		optional   bool
		data       map[string]string
		secret     bool
	)
	switch {
	case ef.ConfigMapRef != nil:
		kind, name, optional = "configmap", ef.ConfigMapRef.Name, isTrue(ef.ConfigMapRef.Optional)
		cm, err := r.configMap(name, optional)
		if err != nil || cm == nil {
			return err
		}
		data = cm.Data
	case ef.SecretRef != nil:
		kind, name, optional, secret = "secret", ef.SecretRef.Name, isTrue(ef.SecretRef.Optional), true
		s, err := r.secret(name, optional)
		if err != nil || s == nil {
			return err
		}
		data = map[string]string{}
		for k, v := range s.Data {
			data[k] = string(v)
		}
	default:
		return nil
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var invalid []string
	for _, k := range keys {
		n := ef.Prefix + k
		if !r.validName(n) {
			invalid = append(invalid, n)
			continue
		}
		r.set(Var{Name: n, Value: data[k], Source: fmt.Sprintf("%s/%s key %s", kind, name, k), Secret: secret})
	}
	if len(invalid) > 0 {
		r.warnf("keys [%s] of envFrom %s/%s are no valid variable names: the kubelet skipped them", strings.Join(invalid, ", "), kind, name)
	}
	return nil
}

// validName: the kubelet takes n as a variable name from envFrom.
func (r *resolver) validName(n string) bool {
	if r.opts.StrictNames {
		return len(validation.IsEnvVarName(n)) == 0
	}
	return len(validation.IsRelaxedEnvVarName(n)) == 0
}

// envVar resolves one env entry; ok is false when the kubelet leaves it
// out (an optional reference to what does not exist).
func (r *resolver) envVar(e corev1.EnvVar, lookup func(string) (string, bool)) (Var, bool, error) {
	if e.Value != "" || e.ValueFrom == nil {
		// Only literal values are expanded; a value from a source is
		// taken as it is.
		return Var{Name: e.Name, Value: expand(e.Value, lookup), Source: "env"}, true, nil
	}
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := fieldValue(r.pod, vf.FieldRef.FieldPath)
		if err != nil {
			r.leftOut[e.Name] = "fieldRef " + vf.FieldRef.FieldPath
			r.warnf("%s: %v", e.Name, err)
			return Var{}, false, nil
		}
		return Var{Name: e.Name, Value: v, Source: "fieldRef " + vf.FieldRef.FieldPath}, true, nil
	case vf.ResourceFieldRef != nil:
		v, ok, err := r.resourceValue(e.Name, vf.ResourceFieldRef)
		if !ok {
			r.leftOut[e.Name] = "resourceFieldRef " + vf.ResourceFieldRef.Resource
		}
		return Var{Name: e.Name, Value: v, Source: "resourceFieldRef " + vf.ResourceFieldRef.Resource}, ok, err
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		optional := isTrue(ref.Optional)
		cm, err := r.configMap(ref.Name, optional)
		if err != nil || cm == nil {
			return Var{}, false, err
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			r.absentKey(e.Name, "configmap", ref.Name, ref.Key, optional)
			return Var{}, false, nil
		}
		return Var{Name: e.Name, Value: v, Source: fmt.Sprintf("configmap/%s key %s", ref.Name, ref.Key)}, true, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		optional := isTrue(ref.Optional)
		s, err := r.secret(ref.Name, optional)
		if err != nil || s == nil {
			return Var{}, false, err
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			r.absentKey(e.Name, "secret", ref.Name, ref.Key, optional)
			return Var{}, false, nil
		}
		return Var{Name: e.Name, Value: string(v), Source: fmt.Sprintf("secret/%s key %s", ref.Name, ref.Key), Secret: true}, true, nil
	}
	r.leftOut[e.Name] = "valueFrom"
	r.warnf("%s: a valueFrom source tether does not know: left out", e.Name)
	return Var{}, false, nil
}

// absentKey: a key the container refers to is not in the object. When the
// reference is optional the kubelet leaves the variable out; otherwise the
// container could not have started without it, so the key was removed
// since.
func (r *resolver) absentKey(name, kind, obj, key string, optional bool) {
	r.leftOut[name] = fmt.Sprintf("%s/%s key %s", kind, obj, key)
	if !optional {
		r.warnf("%s: %s/%s has no key %s any more (the container started with it): left out", name, kind, obj, key)
	}
}

// configMap reads a ConfigMap once; nil without an error when it does not
// exist (with a warning unless optional).
func (r *resolver) configMap(name string, optional bool) (*corev1.ConfigMap, error) {
	if cm, ok := r.configMaps[name]; ok {
		return cm, nil
	}
	if r.missing["configmap/"+name] {
		return nil, nil
	}
	cm, err := r.lookup.ConfigMap(r.ctx, r.pod.Namespace, name)
	if apierrors.IsNotFound(err) {
		r.notFound("configmap/"+name, optional)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configmap %s: %w", name, err)
	}
	r.configMaps[name] = cm
	return cm, nil
}

func (r *resolver) secret(name string, optional bool) (*corev1.Secret, error) {
	if s, ok := r.secrets[name]; ok {
		return s, nil
	}
	if r.missing["secret/"+name] {
		return nil, nil
	}
	s, err := r.lookup.Secret(r.ctx, r.pod.Namespace, name)
	if apierrors.IsNotFound(err) {
		r.notFound("secret/"+name, optional)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	r.secrets[name] = s
	return s, nil
}

func (r *resolver) notFound(obj string, optional bool) {
	r.missing[obj] = true
	if !optional {
		r.warnf("%s does not exist any more (the container started with it): its variables are left out", obj)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// fieldValue is a fieldRef's value, for the paths an env var may use.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		return joinIPs(pod.Status.HostIPs, func(ip corev1.HostIP) string { return ip.IP }), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return joinIPs(pod.Status.PodIPs, func(ip corev1.PodIP) string { return ip.IP }), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels", pod.Labels}, {"metadata.annotations", pod.Annotations}} {
		if key, ok := subscript(path, m.prefix); ok {
			return m.values[key], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not a field an environment variable can take", path)
}

// subscript reads PREFIX['KEY'].
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

func joinIPs[T any](ips []T, ip func(T) string) string {
	s := make([]string, len(ips))
	for i, x := range ips {
		s[i] = ip(x)
	}
	return strings.Join(s, ",")
}

// formatMap writes labels or annotations as the downward API does: sorted
// key="quoted value" lines.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return strings.Join(lines, "\n")
}
