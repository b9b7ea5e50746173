package podfiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/daemon"
)

func TestWriteAndMounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	files := []daemon.EnvFile{
		{Path: "/var/run/secrets/kubernetes.io/serviceaccount/token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", Data: []byte("tok")},
		{Path: "/etc/app/config.yaml", MountPath: "/etc/app/config.yaml", Data: []byte("x: 1")}, // a subPath mount
	}
	if err := CheckDir(dir); err != nil {
		t.Fatal(err)
	}
	root, err := Write(dir, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	want := map[string]string{
		"/var/run/secrets/kubernetes.io/serviceaccount": filepath.Join(root, "var/run/secrets/kubernetes.io/serviceaccount"),
		"/etc/app/config.yaml":                          filepath.Join(root, "etc/app/config.yaml"),
	}
	if diff := cmp.Diff(want, Mounts(root, files)); diff != "" {
		t.Errorf("mounts (-want +got)\n%s", diff)
	}
	if _, err := Write(dir, []daemon.EnvFile{{Path: "/etc/../../x"}}); err == nil {
		t.Error("a path with .. was written")
	}
}

func TestCheckDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(file); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Errorf("a file: %v", err)
	}
	if err := CheckDir(filepath.Join(file, "sub")); err == nil || !strings.Contains(err.Error(), "is not a folder") {
		t.Errorf("under a file: %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir(filepath.Join(ro, "d")); err == nil || !strings.Contains(err.Error(), "you can write to") {
			t.Errorf("unwritable: %v", err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("CheckDir left %v", entries)
	}
}
