package cluster

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is one container image the local cluster runs, built from a single
// static binary with no base image.
type Image struct {
	// Ref is the image reference pods name, e.g. docker.io/tetherkube/tether-agent:dev.
	Ref string
	// Binary is the path of the static binary, relative to Config.Dir/bin.
	Binary string
	// Entrypoint and Cmd are the image's ENTRYPOINT and CMD.
	Entrypoint []string
	Cmd        []string
	// User is the image's USER; empty means root.
	User string
	// File is the tarball's name under Config.Dir/images.
	File string
}

// Image references the cluster and the tests use.
const (
	PauseImage   = "docker.io/tetherkube/pause:local"
	CoreDNSImage = "docker.io/rancher/mirrored-coredns-coredns:1.12.0" // what k3s v1.32.0+k3s1's manifest names
	AgentImage   = "docker.io/tetherkube/tether-agent:dev"
	DemoImage    = "docker.io/tetherkube/tether-demo:dev"
	// GreeterImage runs grpc-go's own helloworld greeter_server (module
	// google.golang.org/grpc/examples), a gRPC server tether did not write.
	GreeterImage = "docker.io/tetherkube/greeter-server:dev"
)

// nonRoot is the uid:gid tether's own images run as.
const nonRoot = "65532:65532"

// Images lists every image the local cluster needs.
func Images() []Image {
	return []Image{
		{Ref: PauseImage, Binary: "pause", Entrypoint: []string{"/pause"}, User: nonRoot, File: "pause.tar"},
		{Ref: CoreDNSImage, Binary: "coredns", Entrypoint: []string{"/coredns"}, File: "coredns.tar"},
		{Ref: AgentImage, Binary: "tether-agent", Entrypoint: []string{"/tether-agent"}, User: nonRoot, File: "tether-agent.tar"},
		{Ref: DemoImage, Binary: "tether-demo", Entrypoint: []string{"/tether-demo"}, Cmd: []string{"serve"}, User: nonRoot, File: "tether-demo.tar"},
		{Ref: GreeterImage, Binary: "greeter-server", Entrypoint: []string{"/greeter-server"}, User: nonRoot, File: "greeter-server.tar"},
	}
}

// BuildImages writes every image's docker-archive tarball under Dir/images,
// rewriting only those whose binary is newer than the tarball. It returns
// the tarballs it wrote.
func BuildImages(cfg Config) ([]string, error) {
	if err := os.MkdirAll(cfg.imagesDir(), 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, im := range Images() {
		bin := filepath.Join(cfg.binDir(), im.Binary)
		out := filepath.Join(cfg.imagesDir(), im.File)
		binInfo, err := os.Stat(bin)
		if err != nil {
			return written, fmt.Errorf("image %s: binary missing (run `make images`): %w", im.Ref, err)
		}
		if outInfo, err := os.Stat(out); err == nil && !outInfo.ModTime().Before(binInfo.ModTime()) {
			continue
		}
		if err := WriteImage(im, bin, out); err != nil {
			return written, err
		}
		cfg.progressf("built image %s -> %s", im.Ref, out)
		written = append(written, out)
	}
	return written, nil
}

// WriteImage packs the binary at bin as image im into a docker-archive
// tarball at out, which containerd (and k3s's airgap import) load offline.
func WriteImage(im Image, bin, out string) error {
	layerTar, err := rootfsTar(bin, "/"+path.Base(im.Entrypoint[0]))
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", im.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{
		Entrypoint: im.Entrypoint,
		Cmd:        im.Cmd,
		User:       im.User,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	tag, err := name.NewTag(im.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", im.Ref, err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return fmt.Errorf("write image %s: %w", im.Ref, err)
	}
	return os.Rename(tmp, out)
}

// rootfsTar returns a layer holding the binary at dst plus the few files a
// static binary expects: /etc/passwd with root and nonroot, /tmp, /etc/hosts
// placeholders that the runtime bind-mounts over.
func rootfsTar(bin, dst string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"dev/", 0o755}, {"proc/", 0o755}, {"sys/", 0o755}, {"var/", 0o755}, {"var/run/", 0o755}}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{strings.TrimPrefix(dst, "/"), 0o755, data},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
