package cluster

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tetherkube/tether/internal/ociimage"
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
	// NXDNSImage answers the names outside the cluster NXDOMAIN at once
	// (integration/cluster/nxdns).
	NXDNSImage = "docker.io/tetherkube/nxdns:local"
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
		// Root, for port 53 on the node's address (hostNetwork).
		{Ref: NXDNSImage, Binary: "nxdns", Entrypoint: []string{"/nxdns"}, File: "nxdns.tar"},
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
	img, err := ociimage.Build(ociimage.Spec{Entrypoint: im.Entrypoint, Cmd: im.Cmd, User: im.User}, bin)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	return ociimage.WriteDockerArchive(img, im.Ref, out)
}
