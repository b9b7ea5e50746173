package podenv

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Mount is one volume mount of a container and whether tether copies its
// files.
type Mount struct {
	MountPath, Volume string
	// Kind is the volume's type as the pod spec names it: configMap,
	// secret, projected, downwardAPI, emptyDir, ...
	Kind string
	// Copy: its files are configuration the kubelet writes (ConfigMap,
	// Secret, projected, downwardAPI); else Reason says why not.
	Copy   bool
	Reason string
	// Secret: it holds a Secret's keys or a service account token.
	Secret bool
}

// Mounts lists container's volume mounts, in the order of its spec.
func Mounts(pod *corev1.Pod, container string) []Mount {
	c := findContainer(pod, container)
	if c == nil {
		return nil
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []Mount
	for _, vm := range c.VolumeMounts {
		m := Mount{MountPath: vm.MountPath, Volume: vm.Name}
		v, ok := vols[vm.Name]
		if !ok {
			m.Kind, m.Reason = "unknown", "the pod has no volume of that name"
			out = append(out, m)
			continue
		}
		m.Kind, m.Copy, m.Secret, m.Reason = classify(v.VolumeSource)
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].MountPath < out[j].MountPath })
	return out
}

func classify(vs corev1.VolumeSource) (kind string, copy, secret bool, reason string) {
	switch {
	case vs.ConfigMap != nil:
		return "configMap", true, false, ""
	case vs.Secret != nil:
		return "secret", true, true, ""
	case vs.DownwardAPI != nil:
		return "downwardAPI", true, false, ""
	case vs.Projected != nil:
		for _, s := range vs.Projected.Sources {
			if s.Secret != nil || s.ServiceAccountToken != nil {
				secret = true
			}
		}
		return "projected", true, secret, ""
	case vs.EmptyDir != nil:
		return "emptyDir", false, false, "scratch space the pod writes while it runs, not configuration"
	case vs.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim", false, false, fmt.Sprintf("persistent data (claim %s), possibly large and shared: read it in the pod", vs.PersistentVolumeClaim.ClaimName)
	case vs.HostPath != nil:
		return "hostPath", false, false, fmt.Sprintf("a folder of the node (%s), not the pod's", vs.HostPath.Path)
	case vs.Ephemeral != nil:
		return "ephemeral", false, false, "a volume provisioned for the pod: data, not configuration"
	case vs.CSI != nil:
		return "csi", false, false, fmt.Sprintf("a volume of CSI driver %s: its content is the driver's", vs.CSI.Driver)
	case vs.Image != nil:
		return "image", false, false, fmt.Sprintf("an image's content (%s): pull the image to read it", vs.Image.Reference)
	case vs.NFS != nil:
		return "nfs", false, false, "a network file system: mount it yourself"
	}
	kind = "other"
	for _, k := range []struct {
		set  bool
		name string
	}{{vs.GitRepo != nil, "gitRepo"}, {vs.ISCSI != nil, "iscsi"}, {vs.FC != nil, "fc"}, {vs.AWSElasticBlockStore != nil, "awsElasticBlockStore"},
		{vs.GCEPersistentDisk != nil, "gcePersistentDisk"}, {vs.AzureDisk != nil, "azureDisk"}, {vs.AzureFile != nil, "azureFile"},
		{vs.CephFS != nil, "cephfs"}, {vs.RBD != nil, "rbd"}, {vs.Glusterfs != nil, "glusterfs"}} {
		if k.set {
			kind = k.name
		}
	}
	return kind, false, false, fmt.Sprintf("a %s volume: storage, not configuration tether copies", strings.TrimSpace(kind))
}

// MountOf returns the mount a path in the container is under: the one
// with the longest mount path that holds it.
func MountOf(mounts []Mount, path string) (Mount, bool) {
	best, found := Mount{}, false
	for _, m := range mounts {
		mp := strings.TrimSuffix(m.MountPath, "/")
		if (path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) >= len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}

// DefaultContainer is the container tether reads when none is named: the
// one the kubectl.kubernetes.io/default-container annotation names, else
// the first app container (as kubectl exec and logs choose).
func DefaultContainer(pod *corev1.Pod) string {
	if n := pod.Annotations["kubectl.kubernetes.io/default-container"]; n != "" && findContainer(pod, n) != nil {
		return n
	}
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0].Name
	}
	return ""
}

// PickContainer returns name when pod has that container (app or init),
// DefaultContainer when name is empty, else a user error listing the
// containers.
func PickContainer(pod *corev1.Pod, name string) (string, error) {
	if name == "" {
		return DefaultContainer(pod), nil
	}
	if !HasContainer(pod, name) {
		return "", errdefs.User("pod %s has no container %q; containers: %s", pod.Name, name, ContainerNames(pod))
	}
	return name, nil
}

// HasContainer: pod has an app or init container named name.
func HasContainer(pod *corev1.Pod, name string) bool { return findContainer(pod, name) != nil }

// ContainerNames lists the pod's app containers, then its init
// containers, for messages.
func ContainerNames(pod *corev1.Pod) string {
	var n []string
	for _, c := range pod.Spec.Containers {
		n = append(n, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		n = append(n, c.Name+" (init)")
	}
	return strings.Join(n, ", ")
}

// References lists the ConfigMaps and Secrets a container's environment
// names (for the permission check), each once, in the spec's order.
func References(pod *corev1.Pod, container string) (configMaps, secrets []string) {
	c := findContainer(pod, container)
	if c == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	add := func(list *[]string, kind, name string) {
		if !seen[kind+"/"+name] {
			seen[kind+"/"+name] = true
			*list = append(*list, name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			add(&configMaps, "cm", ef.ConfigMapRef.Name)
		}
		if ef.SecretRef != nil {
			add(&secrets, "s", ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			add(&configMaps, "cm", r.Name)
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			add(&secrets, "s", r.Name)
		}
	}
	return configMaps, secrets
}
