package daemon

import (
	"io/fs"

	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// EnvSource says where Env takes a container's environment from.
type EnvSource string

const (
	// EnvAuto: from the process when an agent can read it, else from the
	// spec (with a warning saying why).
	EnvAuto EnvSource = "auto"
	// EnvProcess: from the running process, through an inspection agent
	// that runs as the process's user: the spec's variables, the image's
	// ENV and the runtime's (PATH, HOSTNAME).
	EnvProcess EnvSource = "process"
	// EnvSpec: from the pod's spec and the objects it names, as the
	// kubelet computes it; no agent is added, and the image's ENV and the
	// runtime's variables are missing.
	EnvSpec EnvSource = "spec"
)

// EnvSources are the valid sources.
var EnvSources = []EnvSource{EnvAuto, EnvProcess, EnvSpec}

// EnvRequest names the container whose environment to read.
type EnvRequest struct {
	Namespace string
	// Target is pod/NAME, NAME (a pod), deploy/NAME or sts/NAME (a ready
	// pod of the workload).
	Target string
	// Container is "" for the pod's only, or first, app container.
	Container string
	Source    EnvSource
	// Files: also read the ConfigMap, Secret, projected and downwardAPI
	// volumes the container mounts (needs the process: not with EnvSpec).
	Files      bool
	AgentImage string
}

// EnvResult is a container's environment.
type EnvResult struct {
	Pod, Container string
	// PickedFrom is the workload the pod was picked from, if one was named.
	PickedFrom string
	// Source is what the variables were read from: EnvProcess or EnvSpec.
	Source EnvSource
	Vars   []EnvVar
	// Files are the files of the volumes, with their paths in the
	// container.
	Files []EnvFile
	// NotCopied are the container's other volume mounts, with the reason.
	NotCopied []EnvMount
	Warnings  []string
}

// EnvVar is one variable and where it comes from.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Source: "env", "configmap/app key DB_HOST", "secret/creds key
	// token", "fieldRef metadata.name", "resourceFieldRef limits.cpu",
	// "service link service/db", "image", "runtime".
	Source string `json:"source"`
	Secret bool   `json:"secret,omitempty"`
}

// EnvFile is one file of a volume.
type EnvFile struct {
	// Path is the file's path in the container.
	Path string
	// MountPath is the volume mount it is under.
	MountPath string
	Mode      fs.FileMode
	Data      []byte
	// Secret: it comes from a Secret or is a service account token.
	Secret bool
}

// EnvMount is a volume mount whose files are not copied.
type EnvMount struct {
	MountPath string `json:"mountPath"`
	Volume    string `json:"volume"`
	Kind      string `json:"kind"`
	Reason    string `json:"reason"`
}

// EnvRequestToProto and the functions below carry Env's messages.
func EnvRequestToProto(r EnvRequest) *daemonv1.EnvRequest {
	return &daemonv1.EnvRequest{Namespace: r.Namespace, Target: r.Target, Container: r.Container, Source: string(r.Source),
		Files: r.Files, AgentImage: r.AgentImage}
}

func EnvRequestFromProto(p *daemonv1.EnvRequest) EnvRequest {
	return EnvRequest{Namespace: p.GetNamespace(), Target: p.GetTarget(), Container: p.GetContainer(), Source: EnvSource(p.GetSource()),
		Files: p.GetFiles(), AgentImage: p.GetAgentImage()}
}

func EnvResultToProto(r EnvResult) *daemonv1.EnvResult {
	p := &daemonv1.EnvResult{Pod: r.Pod, Container: r.Container, PickedFrom: r.PickedFrom, Source: string(r.Source), Warnings: r.Warnings}
	for _, v := range r.Vars {
		p.Vars = append(p.Vars, &daemonv1.EnvVar{Name: v.Name, Value: []byte(v.Value), Source: v.Source, Secret: v.Secret})
	}
	for _, f := range r.Files {
		p.Files = append(p.Files, &daemonv1.EnvFile{Path: f.Path, MountPath: f.MountPath, Mode: uint32(f.Mode), Data: f.Data, Secret: f.Secret})
	}
	for _, m := range r.NotCopied {
		p.NotCopied = append(p.NotCopied, &daemonv1.EnvMount{MountPath: m.MountPath, Volume: m.Volume, Kind: m.Kind, Reason: m.Reason})
	}
	return p
}

func EnvResultFromProto(p *daemonv1.EnvResult) EnvResult {
	r := EnvResult{Pod: p.GetPod(), Container: p.GetContainer(), PickedFrom: p.GetPickedFrom(), Source: EnvSource(p.GetSource()),
		Warnings: p.GetWarnings()}
	for _, v := range p.GetVars() {
		r.Vars = append(r.Vars, EnvVar{Name: v.GetName(), Value: string(v.GetValue()), Source: v.GetSource(), Secret: v.GetSecret()})
	}
	for _, f := range p.GetFiles() {
		r.Files = append(r.Files, EnvFile{Path: f.GetPath(), MountPath: f.GetMountPath(), Mode: fs.FileMode(f.GetMode()), Data: f.GetData(),
			Secret: f.GetSecret()})
	}
	for _, m := range p.GetNotCopied() {
		r.NotCopied = append(r.NotCopied, EnvMount{MountPath: m.GetMountPath(), Volume: m.GetVolume(), Kind: m.GetKind(), Reason: m.GetReason()})
	}
	return r
}
