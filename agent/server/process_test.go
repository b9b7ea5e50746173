package server

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/agent"
)

// fakeProc writes a process under procfs.
func fakeProc(t *testing.T, procfs string, pid, cgroup string, uid int) string {
	t.Helper()
	dir := filepath.Join(procfs, pid)
	must(t, os.MkdirAll(filepath.Join(dir, "root"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
	status := "Name:\tapp\nUid:\t" + itoa(uid) + "\t" + itoa(uid) + "\t" + itoa(uid) + "\t" + itoa(uid) + "\nGid:\t7\t7\t7\t7\n"
	must(t, os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "environ"), []byte("PATH=/bin\x00A=1\x00"), 0o644))
	return dir
}

func itoa(n int) string { return strconv.Itoa(n) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadProcess(t *testing.T) {
	procfs := t.TempDir()
	fakeProc(t, procfs, "1", "0::/../pause\n", 0)
	fakeProc(t, procfs, "12", "0::/../cri-containerd-abc123.scope\n", 5)
	dir := fakeProc(t, procfs, "9", "0::/../cri-containerd-abc123.scope\n", 5)
	// A ConfigMap volume as the kubelet writes it: keys link to ..data.
	vol := filepath.Join(dir, "root", "etc", "config")
	must(t, os.MkdirAll(filepath.Join(vol, "..2026_01_01", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(vol, "..2026_01_01", "app.yaml"), []byte("a: 1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(vol, "..2026_01_01", "sub", "x"), []byte("x"), 0o600))
	must(t, os.Symlink("..2026_01_01", filepath.Join(vol, "..data")))
	must(t, os.Symlink("..data/app.yaml", filepath.Join(vol, "app.yaml")))
	must(t, os.Symlink("..data/sub", filepath.Join(vol, "sub")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(vol, "escape")))
	must(t, os.Symlink("../../x", filepath.Join(vol, "climb")))

	got, err := readProcess(procfs, 100, agent.ProcessRequest{ContainerID: "abc123", Paths: []string{"/etc/config", "/missing", "rel"}})
	if err != nil {
		t.Fatal(err)
	}
	want := agent.ProcessData{
		PID: 9, UID: 5, GID: 7, Environ: []string{"PATH=/bin", "A=1"},
		Files: []agent.ProcessFile{
			{Path: "/etc/config/app.yaml", Mode: 0o644, Data: []byte("a: 1\n")},
			{Path: "/etc/config/sub/x", Mode: 0o600, Data: []byte("x")},
		},
		Problems: []string{
			"/etc/config/climb: a link to ../../x, not followed",
			"/etc/config/escape: a link to /etc/passwd, not followed",
			"/missing: no such file or directory",
			"rel: not an absolute path without ..",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Without an ID, or an ID no cgroup names: process 1.
	for _, id := range []string{"", "other"} {
		got, err := readProcess(procfs, 100, agent.ProcessRequest{ContainerID: id})
		if err != nil || got.PID != 1 {
			t.Errorf("id %q: pid %d, err %v; want 1", id, got.PID, err)
		}
	}
	// The agent is process 1 (a sidecar): never its own environment.
	if _, err := readProcess(procfs, 1, agent.ProcessRequest{ContainerID: "other"}); !errors.Is(err, agent.ErrNoProcess) {
		t.Errorf("agent as process 1: err %v, want ErrNoProcess", err)
	}
}
