// Package dist builds tether's release: the CLI for each platform as an
// archive, the agent as one multi-platform OCI image tarball, a SHA-256
// sums file and a krew plugin manifest. The same commit gives the same
// bytes: binaries built with -trimpath and no build id, archives with
// sorted entries and fixed times and owners.
package dist

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tetherkube/tether/internal/ociimage"
)

// Platform is one GOOS/GOARCH the CLI is released for.
type Platform struct{ OS, Arch string }

// Platforms: the CLI's release targets. Windows gets the CLI and daemon;
// `tether run`'s namespace mode and capture's local side say at run time
// that they need Linux (docs/run.md).
var Platforms = []Platform{{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"}, {"windows", "amd64"}}

// AgentArchs: the agent image's platforms (linux).
var AgentArchs = []string{"amd64", "arm64"}

// Config is one release build.
type Config struct {
	// Version is a semantic version: v1.2.3, or v0.0.0-COMMIT for a build
	// between releases. Krew and the agent image's tag take it as is.
	Version string
	// Out is the folder the release is written to.
	Out string
	// Source is the module's root (the Go build runs there).
	Source string
	// ReleaseURL is where the archives will be downloaded from, with
	// {version} and {file} (the krew manifest's URIs).
	ReleaseURL string
	// AgentRepo is the agent image's repository (docker.io/tetherkube/tether-agent).
	AgentRepo string
	// Platforms to build; default Platforms.
	Platforms []Platform
	// Go is the go command; default "go".
	Go string
	// Log receives progress lines.
	Log io.Writer
}

// semver is what krew and DefaultAgentImage accept.
var semver = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// epoch is every archive entry's time: the same bytes from the same commit.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Artifact is one file of the release.
type Artifact struct {
	Name   string
	SHA256 string
	// Platform is the CLI archive's platform; nil for other files.
	Platform *Platform
}

// Build writes the release into cfg.Out and returns its artifacts.
func Build(cfg Config) ([]Artifact, error) {
	if !semver.MatchString(cfg.Version) {
		return nil, fmt.Errorf("version %q: a release needs a semantic version, v1.2.3 or v0.0.0-COMMIT", cfg.Version)
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Platforms == nil {
		cfg.Platforms = Platforms
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "plugins"), 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "tether-dist-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	readme, err := os.ReadFile(filepath.Join(cfg.Source, "README.md"))
	if err != nil {
		return nil, err
	}
	var arts []Artifact
	for _, p := range cfg.Platforms {
		exe := "tether"
		if p.OS == "windows" {
			exe += ".exe"
		}
		bin := filepath.Join(work, p.OS+"-"+p.Arch, exe)
		if err := cfg.goBuild(p, "./cmd/tether", bin); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		files := []archived{{exe, 0o755, data}, {"README.md", 0o644, readme}}
		name := fmt.Sprintf("tether_%s_%s_%s", cfg.Version, p.OS, p.Arch)
		if p.OS == "windows" {
			name += ".zip"
			err = writeFile(filepath.Join(cfg.Out, name), zipArchive(files))
		} else {
			name += ".tar.gz"
			var b []byte
			if b, err = tarGz(files); err == nil {
				err = writeFile(filepath.Join(cfg.Out, name), b)
			}
		}
		if err != nil {
			return nil, err
		}
		a, err := artifact(cfg.Out, name)
		if err != nil {
			return nil, err
		}
		a.Platform = &p
		arts = append(arts, a)
		fmt.Fprintf(cfg.Log, "built %s\n", name)
	}

	var imgs []v1.Image
	for _, arch := range AgentArchs {
		bin := filepath.Join(work, "agent-"+arch, "tether-agent")
		if err := cfg.goBuild(Platform{"linux", arch}, "./cmd/tether-agent", bin); err != nil {
			return nil, err
		}
		img, err := ociimage.Build(ociimage.Spec{Entrypoint: []string{"/tether-agent"}, User: "65532:65532", Arch: arch}, bin)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	imageName := fmt.Sprintf("tether-agent_%s_oci.tar", cfg.Version)
	ref := cfg.AgentRepo + ":" + cfg.Version
	if err := ociimage.WriteOCITarball(imgs, ref, filepath.Join(cfg.Out, imageName)); err != nil {
		return nil, err
	}
	a, err := artifact(cfg.Out, imageName)
	if err != nil {
		return nil, err
	}
	arts = append(arts, a)
	fmt.Fprintf(cfg.Log, "built %s (%s, linux/%s)\n", imageName, ref, strings.Join(AgentArchs, ", linux/"))

	if err := writeFile(filepath.Join(cfg.Out, "plugins", "tether.yaml"), krewManifest(cfg, arts)); err != nil {
		return nil, err
	}
	plugin, err := artifact(cfg.Out, "plugins/tether.yaml")
	if err != nil {
		return nil, err
	}
	arts = append(arts, plugin)
	var sums bytes.Buffer
	sort.Slice(arts, func(i, j int) bool { return arts[i].Name < arts[j].Name })
	for _, a := range arts {
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.Name)
	}
	if err := writeFile(filepath.Join(cfg.Out, "SHA256SUMS"), sums.Bytes()); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "wrote %s\n", filepath.Join(cfg.Out, "SHA256SUMS"))
	return arts, nil
}

// goBuild builds pkg for p into out: static, -trimpath, no build id, the
// version linked in.
func (cfg Config) goBuild(p Platform, pkg, out string) error {
	cmd := exec.Command(cfg.Go, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -buildid= -X github.com/tetherkube/tether/internal/buildinfo.version="+cfg.Version, "-o", out, pkg)
	cmd.Dir = cfg.Source
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for %s/%s: %w\n%s", pkg, p.OS, p.Arch, err, b)
	}
	return nil
}

type archived struct {
	name string
	mode int64
	data []byte
}

func tarGz(files []archived) ([]byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // no name, no time in the header
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)),
			ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func zipArchive(files []archived) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: epoch}
		h.SetMode(os.FileMode(f.mode))
		w, _ := zw.CreateHeader(h)
		w.Write(f.data)
	}
	zw.Close()
	return buf.Bytes()
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func artifact(dir, name string) (Artifact, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Artifact{}, err
	}
	return Artifact{Name: name, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// krewManifest is the krew plugin manifest of the CLI archives.
func krewManifest(cfg Config, arts []Artifact) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: tether
spec:
  version: %s
  homepage: https://github.com/tetherkube/tether
  shortDescription: Intercept, record, replay and trace a workload's traffic
  description: |
    tether connects your laptop to a Kubernetes workload: send its traffic
    (all of it, or only requests with your header) to a process on your
    machine, run that process with the pod's DNS, environment and files,
    record and replay the requests the workload sees, trace where a
    connection from a pod goes, capture packets as pcap, and roll back
    every change tether made to the cluster.
  caveats: |
    tether adds its agent to the pods it works on, from the image
    %s:%s. A cluster that cannot pull it loads the release's
    tether-agent_%s_oci.tar (k3s: k3s ctr images import FILE; kind: kind
    load image-archive FILE; minikube: minikube image load FILE), or pass
    --agent-image with a copy in your own registry.
  platforms:
`, cfg.Version, cfg.AgentRepo, cfg.Version, cfg.Version)
	for _, a := range arts {
		if a.Platform == nil {
			continue
		}
		exe := "tether"
		if a.Platform.OS == "windows" {
			exe += ".exe"
		}
		url := strings.NewReplacer("{version}", cfg.Version, "{file}", a.Name).Replace(cfg.ReleaseURL)
		fmt.Fprintf(&b, `  - selector:
      matchLabels:
        os: %s
        arch: %s
    uri: %s
    sha256: %s
    bin: %s
    files:
    - from: %s
      to: .
    - from: README.md
      to: .
`, a.Platform.OS, a.Platform.Arch, url, a.SHA256, exe, exe)
	}
	return b.Bytes()
}
