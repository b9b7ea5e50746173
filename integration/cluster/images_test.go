package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteImageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := Image{Ref: "docker.io/tetherkube/tool:dev", Entrypoint: []string{"/tool"}, Cmd: []string{"serve"}, User: nonRoot}
	out := filepath.Join(dir, "tool.tar")
	if err := WriteImage(im, bin, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(im.Ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/tool"}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if cf.Config.User != nonRoot || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config = %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
}
