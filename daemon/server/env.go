package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/podenv"
	"github.com/tetherkube/tether/daemon/internal/trace"
	"github.com/tetherkube/tether/internal/access"
	"github.com/tetherkube/tether/internal/errdefs"
)

// envRole is the Role a refused env asks for.
const envRole = "the tether-env Role in docs/intercept.md"

// Env returns a container's environment: resolved from its spec as the
// kubelet does, and, unless the request says spec, read from the running
// process through an inspection agent running as the process's user.
func (d *Daemon) Env(ctx context.Context, req daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error) {
	if req.Source == "" {
		req.Source = daemon.EnvAuto
	}
	if !slices.Contains(daemon.EnvSources, req.Source) {
		return daemon.EnvResult{}, errdefs.User("source %q: write auto, process or spec", req.Source)
	}
	if req.Files && req.Source == daemon.EnvSpec {
		return daemon.EnvResult{}, errdefs.User("--files reads the volumes as the container sees them, through an agent: use --source auto or process")
	}
	objs := access.Objects{}
	if kind, name, _ := strings.Cut(req.Target, "/"); name != "" && !slices.Contains([]string{"pod", "pods", "po"}, strings.ToLower(kind)) {
		objs.Workload = name
	}
	if err := d.permitted(ctx, access.EnvSpec, req.Namespace, objs, "env", envRole); err != nil {
		return daemon.EnvResult{}, err
	}
	pod, picked, err := envPod(ctx, d.cs, req.Namespace, req.Target)
	if err != nil {
		return daemon.EnvResult{}, err
	}
	if req.Container, err = podenv.PickContainer(pod, req.Container); err != nil {
		return daemon.EnvResult{}, err
	}
	if picked != "" {
		progress(fmt.Sprintf("reading pod %s, a ready pod of %s", pod.Name, picked))
	}
	objs.ConfigMaps, objs.Secrets = podenv.References(pod, req.Container)
	if err := d.permitted(ctx, access.EnvSpec, req.Namespace, objs, "env", envRole); err != nil {
		return daemon.EnvResult{}, err
	}
	spec, err := podenv.Resolve(ctx, pod, req.Container, kubeLookup{d.cs}, podenv.Options{StrictNames: d.strictEnvNames()})
	if err != nil {
		return daemon.EnvResult{}, err
	}
	res := daemon.EnvResult{Pod: pod.Name, Container: req.Container, PickedFrom: picked, Source: daemon.EnvSpec}
	if req.Source == daemon.EnvSpec {
		res.Vars, res.Warnings = envVars(spec.Vars), append(spec.Warnings,
			"--source spec: the image's ENV and the runtime's variables (PATH, HOSTNAME, ...) are missing; without --source spec tether reads them from the process")
		return res, nil
	}
	if err := d.permitted(ctx, access.Env, req.Namespace, objs, "env (reading the process)", envRole); err != nil {
		if req.Source == daemon.EnvAuto && !req.Files && errdefs.Class(err) == errdefs.ErrUser {
			res.Vars, res.Warnings = envVars(spec.Vars), append(spec.Warnings,
				"read from the spec, not the process: "+err.Error()+"; the image's ENV and the runtime's variables are missing")
			return res, nil
		}
		return daemon.EnvResult{}, err
	}
	mounts := podenv.Mounts(pod, req.Container)
	var paths []string
	for _, m := range mounts {
		if m.Copy {
			paths = append(paths, m.MountPath)
		}
	}
	if !req.Files {
		paths = nil
	}
	data, err := d.readProcess(ctx, req, pod, paths, progress)
	if err != nil {
		if c := errdefs.Class(err); req.Source == daemon.EnvAuto && !req.Files && (c == errdefs.ErrUser || c == errdefs.ErrFailedCheck || c == errdefs.ErrNotFound) {
			res.Vars, res.Warnings = envVars(spec.Vars), append(spec.Warnings,
				"read from the spec, not the process: "+err.Error()+"; the image's ENV and the runtime's variables are missing")
			return res, nil
		}
		return daemon.EnvResult{}, err
	}
	merged := podenv.Merge(spec, data.Environ)
	res.Source, res.Vars, res.Warnings = daemon.EnvProcess, envVars(merged.Vars), merged.Warnings
	if req.Files {
		res.Files, res.NotCopied = envFiles(mounts, data)
		res.Warnings = append(res.Warnings, data.Problems...)
	}
	return res, nil
}

// readProcess reads the container's process through an inspection agent
// of the run job that runs as the process's user: the one the spec sets,
// else the one a first agent finds (a second agent then runs as it).
func (d *Daemon) readProcess(ctx context.Context, req daemon.EnvRequest, pod *corev1.Pod, paths []string, progress func(string)) (agent.ProcessData, error) {
	uid, gid := runAs(pod, req.Container)
	id := containerID(pod, req.Container)
	ir := inspect.Request{Namespace: req.Namespace, Pod: pod.Name, Container: req.Container, AgentImage: req.AgentImage,
		Job: agent.JobRun, RunAsUser: uid, RunAsGroup: gid}
	for attempt := 0; ; attempt++ {
		data, err := d.readWith(ctx, ir, agent.ProcessRequest{ContainerID: id, Paths: paths}, progress)
		if err != nil || !data.Denied {
			return data, err
		}
		if attempt > 0 || (ir.RunAsUser != nil && *ir.RunAsUser == data.UID && ir.RunAsGroup != nil && *ir.RunAsGroup == data.GID) {
			return agent.ProcessData{}, errdefs.FailedCheck("the agent runs as uid %d gid %d, the process's user, and still may not read it: "+
				"the process added capabilities or is not dumpable; use --source spec", data.UID, data.GID)
		}
		progress(fmt.Sprintf("the process runs as uid %d gid %d: adding an agent that runs as that user to read it", data.UID, data.GID))
		ir.RunAsUser, ir.RunAsGroup = &data.UID, &data.GID
	}
}

func (d *Daemon) readWith(ctx context.Context, ir inspect.Request, pr agent.ProcessRequest, progress func(string)) (agent.ProcessData, error) {
	link, err := d.inspectAgent(ctx, ir, progress)
	if err != nil {
		return agent.ProcessData{}, err
	}
	defer link.Close()
	data, err := link.Agent().ReadProcess(ctx, pr)
	if status.Code(errors.Unwrap(err)) == codes.Unimplemented || strings.Contains(fmt.Sprint(err), "unknown method ReadProcess") {
		return agent.ProcessData{}, errdefs.FailedCheck("the agent image %s predates reading processes (tether env): "+
			"pass --agent-image with this tether's agent image, or use --source spec", ir.AgentImage)
	}
	if errors.Is(err, agent.ErrNotServed) {
		return agent.ProcessData{}, errdefs.FailedCheck("the inspection agent in pod %s is too old to read processes: "+
			"pass --agent-image with a newer agent: %v", ir.Pod, err)
	}
	return data, err
}

// runAs is the user and group the container's process runs as, where the
// spec says (the container's securityContext, else the pod's).
func runAs(pod *corev1.Pod, container string) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == container && c.SecurityContext != nil {
				if c.SecurityContext.RunAsUser != nil {
					uid = c.SecurityContext.RunAsUser
				}
				if c.SecurityContext.RunAsGroup != nil {
					gid = c.SecurityContext.RunAsGroup
				}
			}
		}
	}
	return uid, gid
}

// containerID is the runtime's ID of the running container, without the
// runtime's prefix.
func containerID(pod *corev1.Pod, container string) string {
	for _, s := range append(slices.Clone(pod.Status.ContainerStatuses), pod.Status.InitContainerStatuses...) {
		if s.Name == container {
			if _, id, ok := strings.Cut(s.ContainerID, "://"); ok {
				return id
			}
		}
	}
	return ""
}

func envVars(vs []podenv.Var) []daemon.EnvVar {
	out := make([]daemon.EnvVar, len(vs))
	for i, v := range vs {
		out[i] = daemon.EnvVar{Name: v.Name, Value: v.Value, Source: v.Source, Secret: v.Secret}
	}
	return out
}

// envFiles pairs the files read with their mounts, and lists the mounts
// not copied.
func envFiles(mounts []podenv.Mount, data agent.ProcessData) ([]daemon.EnvFile, []daemon.EnvMount) {
	var files []daemon.EnvFile
	for _, f := range data.Files {
		m, _ := podenv.MountOf(mounts, f.Path)
		files = append(files, daemon.EnvFile{Path: f.Path, MountPath: m.MountPath, Mode: f.Mode, Data: f.Data, Secret: m.Secret})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var not []daemon.EnvMount
	for _, m := range mounts {
		if !m.Copy {
			not = append(not, daemon.EnvMount{MountPath: m.MountPath, Volume: m.Volume, Kind: m.Kind, Reason: m.Reason})
		}
	}
	return files, not
}

// envPod finds the pod target names: pod/NAME, or a ready pod of a
// workload (deploy/NAME, sts/NAME, or a bare NAME as intercept and run
// take it); picked names the workload then.
func envPod(ctx context.Context, cs kubernetes.Interface, namespace, target string) (pod *corev1.Pod, picked string, err error) {
	return trace.PickPod(ctx, cs, namespace, target, trace.PickOptions{Purpose: "read the environment of"})
}

// kubeLookup reads what a container's environment names from the API.
type kubeLookup struct{ cs kubernetes.Interface }

func (k kubeLookup) ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	return k.cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (k kubeLookup) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return k.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (k kubeLookup) Services(ctx context.Context, namespace string) ([]corev1.Service, error) {
	l, err := k.cs.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (k kubeLookup) Node(ctx context.Context, name string) (*corev1.Node, error) {
	return k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// strictEnvNames: the cluster's kubelets skip envFrom keys that are no
// C-like names (before 1.32), judged by the API server's version.
func (d *Daemon) strictEnvNames() bool {
	v, err := d.cs.Discovery().ServerVersion()
	if err != nil {
		return false
	}
	minor, err := strconv.Atoi(strings.TrimRight(v.Minor, "+"))
	return err == nil && v.Major == "1" && minor < 32
}
