package agent

import (
	"bytes"
	"io/fs"

	"github.com/tetherkube/tether/internal/errdefs"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
)

// ProcessRequest names a container's main process and the paths of its
// root to read.
type ProcessRequest struct {
	// ContainerID is the runtime's ID of the container, without its
	// "containerd://" prefix; empty means process 1 of the agent's PID
	// namespace (the target container's when it does not share the pod's).
	ContainerID string
	// Paths are absolute paths in the container (mount paths): the
	// regular files under them are read.
	Paths []string
}

// ProcessData is what the agent read of the process.
type ProcessData struct {
	PID      int
	UID, GID int64
	// Denied: the agent, which runs as another user, may not read the
	// process; UID and GID are the user to run it as.
	Denied bool
	// Environ is the process's environment, NAME=VALUE, in its order.
	Environ []string
	Files   []ProcessFile
	// Problems say what could not be read.
	Problems []string
}

// ProcessFile is one file under a requested path.
type ProcessFile struct {
	// Path is the file's path in the container.
	Path string
	Mode fs.FileMode
	Data []byte
}

// ErrNoProcess: no process of the container is seen from the agent.
var ErrNoProcess = errdefs.New(errdefs.ErrNotFound, "NO_PROCESS", "no process of the container is seen from the agent")

// SplitEnviron splits /proc/PID/environ into its NAME=VALUE entries.
func SplitEnviron(b []byte) []string {
	var out []string
	for _, e := range bytes.Split(b, []byte{0}) {
		if len(e) > 0 {
			out = append(out, string(e))
		}
	}
	return out
}

// JoinEnviron is SplitEnviron's inverse.
func JoinEnviron(env []string) []byte {
	var b bytes.Buffer
	for _, e := range env {
		b.WriteString(e)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// ProcessRequestToProto and the functions below carry the process calls.
func ProcessRequestToProto(r ProcessRequest) *agentv1.ReadProcessRequest {
	return &agentv1.ReadProcessRequest{ContainerId: r.ContainerID, Paths: r.Paths}
}

func ProcessRequestFromProto(p *agentv1.ReadProcessRequest) ProcessRequest {
	return ProcessRequest{ContainerID: p.GetContainerId(), Paths: p.GetPaths()}
}

func ProcessDataToProto(d ProcessData) *agentv1.ReadProcessResponse {
	p := &agentv1.ReadProcessResponse{Pid: int32(d.PID), Uid: d.UID, Gid: d.GID, Denied: d.Denied,
		Environ: JoinEnviron(d.Environ), Problems: d.Problems}
	for _, f := range d.Files {
		p.Files = append(p.Files, &agentv1.ProcessFile{Path: f.Path, Mode: uint32(f.Mode), Data: f.Data})
	}
	return p
}

func ProcessDataFromProto(p *agentv1.ReadProcessResponse) ProcessData {
	d := ProcessData{PID: int(p.GetPid()), UID: p.GetUid(), GID: p.GetGid(), Denied: p.GetDenied(),
		Environ: SplitEnviron(p.GetEnviron()), Problems: p.GetProblems()}
	for _, f := range p.GetFiles() {
		d.Files = append(d.Files, ProcessFile{Path: f.GetPath(), Mode: fs.FileMode(f.GetMode()), Data: f.GetData()})
	}
	return d
}
