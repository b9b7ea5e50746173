// Package podfiles writes what `tether env`, `tether run` and `tether
// intercept ... -- CMD` copy of a container to this machine: its volumes'
// files under a folder (--files DIR) and files of secrets (-f FILE), each
// 0600 and replaced atomically.
package podfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Write writes each file under dir at its path in the container, files
// 0600 and folders 0700, and returns dir as an absolute path.
func Write(dir string, files []daemon.EnvFile) (string, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return "", errdefs.User("--files %s: %v", dir, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", errdefs.User("--files %s: %v", dir, err)
	}
	for _, f := range files {
		if !path.IsAbs(f.Path) || slices.Contains(strings.Split(f.Path, "/"), "..") {
			return "", fmt.Errorf("file %q: not an absolute path without ..", f.Path)
		}
		dst := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(f.Path, "/")))
		if err := mkdirs(root, filepath.Dir(dst)); err != nil {
			return "", err
		}
		if err := WriteFileAtomic(dst, f.Data); err != nil {
			return "", err
		}
	}
	return root, nil
}

// Mounts maps each volume mount path of files to where Write put it under
// root: what the namespace mode bind-mounts at the real paths.
func Mounts(root string, files []daemon.EnvFile) map[string]string {
	m := map[string]string{}
	for _, f := range files {
		mp := f.MountPath
		if mp == "" || !path.IsAbs(mp) || slices.Contains(strings.Split(mp, "/"), "..") {
			continue
		}
		m[path.Clean(mp)] = filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(path.Clean(mp), "/")))
	}
	return m
}

// MountPaths returns the keys of Mounts, sorted.
func MountPaths(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CheckDir says, before anything is changed, whether Write could write
// under dir: dir is a folder, or can be made in its nearest existing
// ancestor, which this user can write to. It creates nothing but a file
// it removes at once.
func CheckDir(dir string) error {
	root, err := filepath.Abs(dir)
	if err != nil {
		return errdefs.User("--files %s: %v", dir, err)
	}
	anc := root
	for {
		st, err := os.Stat(anc)
		if err == nil {
			if !st.IsDir() {
				return errdefs.User("--files %s: %s is not a folder: name a folder to write the pod's files in", dir, anc)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return errdefs.User("--files %s: %v", dir, err)
		}
		parent := filepath.Dir(anc)
		if parent == anc {
			return errdefs.User("--files %s: no folder of that path exists", dir)
		}
		anc = parent
	}
	f, err := os.CreateTemp(anc, ".tether-check-*")
	if err != nil {
		return errdefs.User("--files %s: cannot write in %s (%v): name a folder you can write to", dir, anc, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// mkdirs makes the folders from root down to dir, each 0700.
func mkdirs(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o700); err != nil && !os.IsExist(err) {
			return fmt.Errorf("--files: %w", err)
		}
	}
	return nil
}

// WriteFileAtomic writes data to path with mode 0600: to a new file in the
// same folder first, then renamed over path, so a reader sees the old file
// or the new one, and the secrets are never in a file others may read.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return errdefs.User("write %s: %v", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
