package env

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func isWindows() bool { return runtime.GOOS == "windows" }

// writeFiles writes each file under dir at its path in the container,
// files 0600 and folders 0700, and returns dir as an absolute path.
func writeFiles(dir string, files []daemon.EnvFile) (string, error) {
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
		if err := writeFileAtomic(dst, f.Data); err != nil {
			return "", err
		}
	}
	return root, nil
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
