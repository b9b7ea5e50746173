package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/agent"
)

// Limits of ReadProcess's files: configuration, not data.
const (
	maxProcessFiles     = 4096
	maxProcessFileBytes = 64 << 20 // all files together
	maxProcessDepth     = 16
)

func (s *sessionService) ReadProcess(_ context.Context, req agent.ProcessRequest) (agent.ProcessData, error) {
	if err := s.agent.serving("ReadProcess", agent.JobRun); err != nil {
		return agent.ProcessData{}, err
	}
	return readProcess("/proc", os.Getpid(), req)
}

// readProcess reads the container's main process under procfs; self is
// the agent's own PID there (parameters for the tests).
func readProcess(procfs string, self int, req agent.ProcessRequest) (agent.ProcessData, error) {
	pid, err := containerPID(procfs, self, req.ContainerID)
	if err != nil {
		return agent.ProcessData{}, err
	}
	d := agent.ProcessData{PID: pid}
	if d.UID, d.GID, err = processIDs(procfs, pid); err != nil {
		return agent.ProcessData{}, err
	}
	env, err := os.ReadFile(filepath.Join(procfs, strconv.Itoa(pid), "environ"))
	if errors.Is(err, fs.ErrPermission) {
		d.Denied = true
		return d, nil
	}
	if err != nil {
		return agent.ProcessData{}, fmt.Errorf("read the environment of process %d: %w", pid, err)
	}
	d.Environ = agent.SplitEnviron(env)
	fr := fileReader{root: filepath.Join(procfs, strconv.Itoa(pid), "root"), data: &d}
	for _, p := range req.Paths {
		if !path.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") {
			d.Problems = append(d.Problems, fmt.Sprintf("%s: not an absolute path without ..", p))
			continue
		}
		fr.read(path.Clean(p), 0)
	}
	return d, nil
}

// containerPID finds the container's main process: the lowest PID whose
// cgroup names the container ID. Without an ID, or when no cgroup names
// it (a runtime that writes no ID in the path), it is process 1: the
// target container's when the pod does not share its process namespace;
// never the agent itself (a sidecar agent is process 1 of its own).
func containerPID(procfs string, self int, id string) (int, error) {
	if id != "" {
		entries, err := os.ReadDir(procfs)
		if err != nil {
			return 0, fmt.Errorf("list processes: %w", err)
		}
		best := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || (best != 0 && pid >= best) {
				continue
			}
			cg, err := os.ReadFile(filepath.Join(procfs, e.Name(), "cgroup"))
			if err == nil && strings.Contains(string(cg), id) {
				best = pid
			}
		}
		if best != 0 {
			return best, nil
		}
	}
	if _, err := os.Stat(filepath.Join(procfs, "1")); err != nil || self == 1 {
		return 0, fmt.Errorf("container %s: %w", id, agent.ErrNoProcess)
	}
	return 1, nil
}

// processIDs reads a process's real uid and gid from its status, which
// anyone may read.
func processIDs(procfs string, pid int) (uid, gid int64, err error) {
	f, err := os.Open(filepath.Join(procfs, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("read the status of process %d: %w", pid, err)
	}
	defer f.Close()
	uid, gid = -1, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "Uid":
			uid, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Gid":
			gid, _ = strconv.ParseInt(fields[0], 10, 64)
		}
	}
	if uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("process %d's status has no Uid or Gid", pid)
	}
	return uid, gid, sc.Err()
}

// fileReader reads the regular files under paths of a process's root.
type fileReader struct {
	root  string // /proc/PID/root
	data  *agent.ProcessData
	bytes int
}

func (fr *fileReader) problem(format string, a ...any) {
	fr.data.Problems = append(fr.data.Problems, fmt.Sprintf(format, a...))
}

// read reads p (a path in the container) and, for a directory, what is
// under it, skipping the kubelet's ..data-style entries. A symbolic link is
// followed when it is relative and does not climb with ..: the kubelet's
// volumes link each key to ..data/KEY.
func (fr *fileReader) read(p string, depth int) {
	full := fr.root + p
	li, err := os.Lstat(full)
	if err != nil {
		fr.problem("%s: %v", p, unwrapPath(err))
		return
	}
	if li.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(full)
		if err != nil {
			fr.problem("%s: %v", p, unwrapPath(err))
			return
		}
		if path.IsAbs(target) || slices.Contains(strings.Split(target, "/"), "..") {
			fr.problem("%s: a link to %s, not followed", p, target)
			return
		}
	}
	fi, err := os.Stat(full)
	if err != nil {
		fr.problem("%s: %v", p, unwrapPath(err))
		return
	}
	switch {
	case fi.Mode().IsRegular():
		if len(fr.data.Files) >= maxProcessFiles || fr.bytes+int(fi.Size()) > maxProcessFileBytes {
			fr.problem("%s: not read: over %d files or %d MiB in all", p, maxProcessFiles, maxProcessFileBytes>>20)
			return
		}
		b, err := os.ReadFile(full)
		if err != nil {
			fr.problem("%s: %v", p, unwrapPath(err))
			return
		}
		fr.bytes += len(b)
		fr.data.Files = append(fr.data.Files, agent.ProcessFile{Path: p, Mode: fi.Mode().Perm(), Data: b})
	case fi.IsDir():
		if depth >= maxProcessDepth {
			fr.problem("%s: deeper than %d directories, not read", p, maxProcessDepth)
			return
		}
		entries, err := os.ReadDir(full)
		if err != nil {
			fr.problem("%s: %v", p, unwrapPath(err))
			return
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") {
				continue // the kubelet's ..data and timestamped folders
			}
			fr.read(path.Join(p, e.Name()), depth+1)
		}
	default:
		fr.problem("%s: not a regular file or directory (%s)", p, fi.Mode().Type())
	}
}

// unwrapPath drops the /proc/PID/root prefix an error names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
