package podenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// objects is a Lookup over fixed objects.
type objects struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	services   map[string][]corev1.Service // by namespace
	node       *corev1.Node
	forbidden  map[string]bool // "services/default", "secret/x", "node"
}

func (o objects) ConfigMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := o.configMaps[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (o objects) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if o.forbidden["secret/"+name] {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, name, nil)
	}
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (o objects) Services(_ context.Context, ns string) ([]corev1.Service, error) {
	if o.forbidden["services/"+ns] {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", nil)
	}
	return o.services[ns], nil
}

func (o objects) Node(_ context.Context, name string) (*corev1.Node, error) {
	if o.forbidden["node"] || o.node == nil {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, name, nil)
	}
	return o.node, nil
}

var (
	yes = true
	no  = false
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func basePod(c corev1.Container) *corev1.Pod {
	c.Name = "app"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"note": `say "hi"`}},
		Spec:   corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "web-sa", EnableServiceLinks: &no, Containers: []corev1.Container{c}},
		Status: corev1.PodStatus{PodIP: "10.42.0.7", PodIPs: []corev1.PodIP{{IP: "10.42.0.7"}, {IP: "fd00::7"}}, HostIP: "192.0.2.2", HostIPs: []corev1.HostIP{{IP: "192.0.2.2"}}},
	}
}

func names(vs []Var) map[string]string {
	m := map[string]string{}
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}

func TestResolve(t *testing.T) {
	kube := svc("default", "kubernetes", "10.43.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	objs := objects{
		configMaps: map[string]*corev1.ConfigMap{
			"app":   {Data: map[string]string{"DB_HOST": "db", "LEVEL": "info", "1bad": "x", "dotted.key": "ok"}},
			"other": {Data: map[string]string{"LEVEL": "debug"}},
		},
		secrets: map[string]*corev1.Secret{
			"creds": {Data: map[string][]byte{"token": []byte("s3cr3t"), "USER": []byte("bob")}},
		},
		services: map[string][]corev1.Service{
			"default": {kube, svc("default", "other", "10.43.0.9", corev1.ServicePort{Port: 1})},
			"shop": {
				svc("shop", "pay-api", "10.43.1.2", corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "grpc-x", Port: 9000, Protocol: corev1.ProtocolUDP}),
				svc("shop", "headless", "None", corev1.ServicePort{Port: 80}),
				svc("shop", "ext", "", corev1.ServicePort{Port: 80}),
			},
		},
		node: &corev1.Node{Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}}},
	}
	kubeVars := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT": "tcp://10.43.0.1:443", "KUBERNETES_PORT_443_TCP": "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.43.0.1",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range kubeVars {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name      string
		c         corev1.Container
		pod       func(*corev1.Pod)
		objs      *objects
		want      map[string]string
		warnings  []string // substrings, in order
		secretSet []string
		relaxed   bool // the kubelet of 1.32 and later
	}{{
		name: "literal env and the kubernetes service always",
		c:    corev1.Container{Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "EMPTY"}}},
		want: with(map[string]string{"A": "1", "EMPTY": ""}),
	}, {
		name: "service links on: the namespace's services with a ClusterIP",
		c:    corev1.Container{},
		pod:  func(p *corev1.Pod) { p.Spec.EnableServiceLinks = nil },
		want: with(map[string]string{
			"PAY_API_SERVICE_HOST": "10.43.1.2", "PAY_API_SERVICE_PORT": "80", "PAY_API_SERVICE_PORT_HTTP": "80", "PAY_API_SERVICE_PORT_GRPC_X": "9000",
			"PAY_API_PORT":        "tcp://10.43.1.2:80",
			"PAY_API_PORT_80_TCP": "tcp://10.43.1.2:80", "PAY_API_PORT_80_TCP_PROTO": "tcp", "PAY_API_PORT_80_TCP_PORT": "80", "PAY_API_PORT_80_TCP_ADDR": "10.43.1.2",
			"PAY_API_PORT_9000_UDP": "udp://10.43.1.2:9000", "PAY_API_PORT_9000_UDP_PROTO": "udp", "PAY_API_PORT_9000_UDP_PORT": "9000", "PAY_API_PORT_9000_UDP_ADDR": "10.43.1.2",
		}),
	}, {
		name: "a kubernetes service of the pod's namespace wins over default's",
		pod:  func(p *corev1.Pod) { p.Spec.EnableServiceLinks = &yes },
		objs: &objects{services: map[string][]corev1.Service{
			"default": {kube},
			"shop":    {svc("shop", "kubernetes", "10.43.5.5", corev1.ServicePort{Port: 8080})},
		}},
		want: map[string]string{
			"KUBERNETES_SERVICE_HOST": "10.43.5.5", "KUBERNETES_SERVICE_PORT": "8080", "KUBERNETES_PORT": "tcp://10.43.5.5:8080",
			"KUBERNETES_PORT_8080_TCP": "tcp://10.43.5.5:8080", "KUBERNETES_PORT_8080_TCP_PROTO": "tcp", "KUBERNETES_PORT_8080_TCP_PORT": "8080",
			"KUBERNETES_PORT_8080_TCP_ADDR": "10.43.5.5",
		},
	}, {
		name:     "default's services unreadable: a warning",
		objs:     &objects{forbidden: map[string]bool{"services/default": true}},
		c:        corev1.Container{Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
		want:     map[string]string{"A": "1"},
		warnings: []string{"KUBERNETES_SERVICE_* variables"},
	}, {
		name: "envFrom in order with prefix, invalid keys skipped, env wins",
		c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}},
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "other"}}},
				{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}},
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: &yes}},
			},
			Env: []corev1.EnvVar{{Name: "DB_HOST", Value: "override"}},
		},
		want:      with(map[string]string{"DB_HOST": "override", "LEVEL": "debug", "dotted.key": "ok", "S_token": "s3cr3t", "S_USER": "bob"}),
		warnings:  []string{"keys [1bad] of envFrom configmap/app"},
		secretSet: []string{"S_USER", "S_token"},
	}, {
		name: "envFrom from 1.32: every key is a name",
		c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}}},
		want:    with(map[string]string{"DB_HOST": "db", "LEVEL": "info", "1bad": "x", "dotted.key": "ok"}),
		relaxed: true,
	}, {
		name: "a missing non-optional envFrom: a warning",
		c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}}},
		want:     kubeVars,
		warnings: []string{"configmap/gone does not exist any more"},
	}, {
		name: "valueFrom: keys, optional, fields",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "HOST", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "DB_HOST"}}},
			{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}},
			{Name: "OPT_KEY", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "nope", Optional: &yes}}},
			{Name: "OPT_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Key: "k", Optional: &yes}}},
			{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "LABEL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "NOLABEL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['none']"}}},
			{Name: "ANN", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['note']"}}},
			{Name: "LABELS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "HOSTIP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "HOSTIPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIPs"}}},
			{Name: "PODIP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "PODIPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIPs"}}},
		}},
		want: with(map[string]string{"HOST": "db", "TOKEN": "s3cr3t", "NAME": "web-1", "NS": "shop", "UID": "u-1", "LABEL": "web", "NOLABEL": "",
			"ANN": `say "hi"`, "LABELS": "app=\"web\"\ntier=\"front\"", "NODE": "node-a", "SA": "web-sa", "HOSTIP": "192.0.2.2", "HOSTIPS": "192.0.2.2",
			"PODIP": "10.42.0.7", "PODIPS": "10.42.0.7,fd00::7"}),
		secretSet: []string{"TOKEN"},
	}, {
		name: "a key removed since the container started: a warning",
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "K", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "nope"}}}}},
		want:     kubeVars,
		warnings: []string{"K: configmap/app has no key nope any more"},
	}, {
		name: "expansion sees envFrom, earlier env and service links, not later env",
		pod:  func(p *corev1.Pod) { p.Spec.EnableServiceLinks = &yes },
		objs: &objects{
			configMaps: map[string]*corev1.ConfigMap{"app": {Data: map[string]string{"DB_HOST": "db"}}},
			services:   map[string][]corev1.Service{"default": {kube}},
		},
		c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
			Env: []corev1.EnvVar{
				{Name: "URL", Value: "pg://$(DB_HOST):$(PORT)/$(LATER)"},
				{Name: "PORT", Value: "5432"},
				{Name: "URL2", Value: "pg://$(DB_HOST):$(PORT)"},
				{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
				{Name: "ESC", Value: "$$(PORT) costs $5"},
				{Name: "FROMREF", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "DB_HOST"}}},
				{Name: "LATER", Value: "x"},
			},
		},
		want: with(map[string]string{"DB_HOST": "db", "URL": "pg://db:$(PORT)/$(LATER)", "PORT": "5432", "URL2": "pg://db:5432",
			"API": "https://10.43.0.1:443", "ESC": "$(PORT) costs $5", "FROMREF": "db", "LATER": "x"}),
	}, {
		name: "env overrides a service link; a later duplicate env wins",
		pod:  func(p *corev1.Pod) { p.Spec.EnableServiceLinks = &yes },
		objs: &objects{services: map[string][]corev1.Service{"default": {kube}}},
		c:    corev1.Container{Env: []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "mine"}, {Name: "D", Value: "1"}, {Name: "D", Value: "2"}}},
		want: with(map[string]string{"KUBERNETES_SERVICE_HOST": "mine", "D": "2"}),
	}, {
		name: "resourceFieldRef with divisor, requests, and the node's allocatable when no limit",
		c: corev1.Container{
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
			Env: []corev1.EnvVar{
				{Name: "MEM_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
				{Name: "MEM_LIMIT_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				{Name: "MEM_REQ_GI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.memory", Divisor: resource.MustParse("1Gi")}}},
				{Name: "CPU_REQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu"}}},
				{Name: "CPU_REQ_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
				{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "EPH_REQ", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.ephemeral-storage"}}},
			},
		},
		want: with(map[string]string{"MEM_LIMIT": "134217728", "MEM_LIMIT_MI": "128", "MEM_REQ_GI": "1", "CPU_REQ": "1", "CPU_REQ_M": "250",
			"CPU_LIMIT": "4", "EPH_REQ": "0"}),
		warnings: []string{"CPU_LIMIT: the container sets no cpu limit: the value is node node-a's allocatable cpu now"},
	}, {
		name: "no limit and the node unreadable: left out, said",
		objs: &objects{services: map[string][]corev1.Service{"default": {kube}}},
		c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}}}},
		want:     kubeVars,
		warnings: []string{"CPU_LIMIT: the container sets no cpu limit, so the kubelet gave it node node-a's allocatable cpu, which tether cannot read"},
	}, {
		name: "a service created after the container started has no variables",
		pod: func(p *corev1.Pod) {
			p.Spec.EnableServiceLinks = &yes
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(1000, 0))}}}}
		},
		objs: &objects{services: map[string][]corev1.Service{
			"default": {kube},
			"shop": {func() corev1.Service {
				s := svc("shop", "late", "10.43.9.9", corev1.ServicePort{Port: 1})
				s.CreationTimestamp = metav1.NewTime(time.Unix(2000, 0))
				return s
			}()},
		}},
		want: kubeVars,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := basePod(tc.c)
			if tc.pod != nil {
				tc.pod(pod)
			}
			o := objs
			if tc.objs != nil {
				o = *tc.objs
			}
			res, err := Resolve(context.Background(), pod, "app", o, Options{StrictNames: !tc.relaxed})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, names(res.Vars)); diff != "" {
				t.Errorf("variables (-want +got):\n%s", diff)
			}
			if len(res.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d like %q", res.Warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(res.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, res.Warnings[i], w)
				}
			}
			var secret []string
			for _, v := range res.Vars {
				if v.Secret {
					secret = append(secret, v.Name)
				}
			}
			if diff := cmp.Diff(tc.secretSet, secret); diff != "" {
				t.Errorf("secret variables (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveSources(t *testing.T) {
	pod := basePod(corev1.Container{
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
		Env: []corev1.EnvVar{
			{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}},
			{Name: "N", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "L", Value: "x"},
		},
	})
	o := objects{
		configMaps: map[string]*corev1.ConfigMap{"app": {Data: map[string]string{"DB_HOST": "db"}}},
		secrets:    map[string]*corev1.Secret{"creds": {Data: map[string][]byte{"token": []byte("t")}}},
		services:   map[string][]corev1.Service{"default": {svc("default", "kubernetes", "10.43.0.1", corev1.ServicePort{Port: 443})}},
	}
	res, err := Resolve(context.Background(), pod, "app", o, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Var{
		{Name: "DB_HOST", Value: "db", Source: "configmap/app key DB_HOST"},
		{Name: "T", Value: "t", Source: "secret/creds key token", Secret: true},
		{Name: "N", Value: "web-1", Source: "fieldRef metadata.name"},
		{Name: "L", Value: "x", Source: "env"},
	}
	if diff := cmp.Diff(want, res.Vars[:4]); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := res.Vars[4]; got.Source != "service link service/kubernetes" {
		t.Errorf("link source = %q", got.Source)
	}
}

func TestResolveErrors(t *testing.T) {
	pod := basePod(corev1.Container{Env: []corev1.EnvVar{
		{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}, Key: "k"}}}}})
	_, err := Resolve(context.Background(), pod, "app", objects{forbidden: map[string]bool{"secret/x": true}}, Options{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("unreadable secret: err = %v, want the forbidden error", err)
	}
	if _, err := Resolve(context.Background(), pod, "nope", objects{}, Options{}); err == nil {
		t.Error("unknown container: no error")
	}
}
