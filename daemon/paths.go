package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tetherkube/tether/internal/localsock"
)

// Paths locate one daemon's socket and log file.
type Paths struct {
	Dir    string `json:"dir"`
	Socket string `json:"socket"`
	Log    string `json:"log"`
}

// PathsFor returns the paths of the daemon for a kube context and API
// server: under $XDG_RUNTIME_DIR/tether, else the user's cache folder,
// in a folder only the user can enter.
func PathsFor(kubeContext, server string) (Paths, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return Paths{}, fmt.Errorf("find a folder for the daemon's socket: %w", err)
		}
		base = cache
	}
	dir := filepath.Join(base, "tether")
	sum := sha256.Sum256([]byte(kubeContext + "\x00" + server))
	id := hex.EncodeToString(sum[:6])
	return Paths{Dir: dir, Socket: filepath.Join(dir, "d-"+id+".sock"), Log: filepath.Join(dir, "d-"+id+".log")}, nil
}

// EnsureDir creates the paths' folder, private to its user, and refuses
// one that another user owns or could enter (internal/localsock).
func (p Paths) EnsureDir() error { return localsock.EnsureDir(p.Dir) }
