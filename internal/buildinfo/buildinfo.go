// Package buildinfo reports which tether build is running. The CLI and the
// agent both print it, so a version mismatch between them is visible.
package buildinfo

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// version is set at link time: -X github.com/tetherkube/tether/internal/buildinfo.version=v0.1.0
var version = "dev"

// Info describes one build of a tether binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the running binary's build information.
func Get() Info {
	info := Info{
		Version:   version,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
				if len(info.Commit) > 12 {
					info.Commit = info.Commit[:12]
				}
			case "vcs.modified":
				if s.Value == "true" && info.Commit != "" {
					info.Commit += "-dirty"
				}
			}
		}
	}
	return info
}

// Identity tells two builds apart even when their version is the same (two
// local builds of one dirty tree): the version plus the executable's
// modification time. The CLI replaces a daemon whose Identity differs.
func Identity() string {
	id := Get().Version
	if exe, err := os.Executable(); err == nil {
		if st, err := os.Stat(exe); err == nil {
			id += "+" + strconv.FormatInt(st.ModTime().UnixNano(), 36)
		}
	}
	return id
}
