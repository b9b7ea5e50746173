package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// importChangedImages loads into the running cluster's containerd every image
// tarball rebuilt since the cluster started or last imported, so a reused
// cluster runs the agent and demo just built.
func importChangedImages(ctx context.Context, cfg Config) error {
	stamp, err := os.Stat(cfg.importStamp())
	since := time.Time{}
	if err == nil {
		since = stamp.ModTime()
	}
	for _, im := range Images() {
		tarPath := filepath.Join(cfg.imagesDir(), im.File)
		info, err := os.Stat(tarPath)
		if err != nil {
			return fmt.Errorf("image %s missing (run `make images`): %w", im.Ref, err)
		}
		if !info.ModTime().After(since) {
			continue
		}
		if err := importIntoNodes(ctx, cfg, tarPath); err != nil {
			return fmt.Errorf("import %s into the running cluster: %w", im.Ref, err)
		}
		cfg.progressf("imported %s", im.Ref)
	}
	return writeImportStamp(cfg)
}

func writeImportStamp(cfg Config) error {
	now := time.Now()
	if err := os.WriteFile(cfg.importStamp(), []byte(now.Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	return os.Chtimes(cfg.importStamp(), now, now)
}

// ImportAgentImage packs the agent binary at bin as the image ref and loads
// it into the running cluster, beside the default agent image: a branch
// whose agent differs tests against its own image (TETHER_AGENT_IMAGE).
func ImportAgentImage(ctx context.Context, cfg Config, ref, bin string) error {
	im := Images()[2]
	if im.Ref != AgentImage {
		return fmt.Errorf("internal: Images()[2] is %s, not the agent", im.Ref)
	}
	im.Ref = ref
	dir, err := os.MkdirTemp("", "tether-agent-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "agent.tar")
	if err := WriteImage(im, bin, out); err != nil {
		return err
	}
	if err := importIntoNodes(ctx, cfg, out); err != nil {
		return fmt.Errorf("import %s into the running cluster: %w", ref, err)
	}
	cfg.progressf("imported %s", ref)
	return nil
}

// ImportTarball loads an image tarball (docker-archive or OCI layout, every
// platform it holds) into the running cluster's containerd, as a user
// loads a release's agent image into a cluster that cannot pull it.
func ImportTarball(ctx context.Context, cfg Config, tarPath string) error {
	if err := importIntoNodes(ctx, cfg, tarPath, "--all-platforms"); err != nil {
		return fmt.Errorf("import %s into the running cluster: %w", tarPath, err)
	}
	return nil
}

// importIntoNodes imports an image tarball into the containerd of every
// node that runs: the server's, and node 2's when it runs.
func importIntoNodes(ctx context.Context, cfg Config, tarPath string, flags ...string) error {
	socks := []string{cfg.containerdSock()}
	if node2Running(cfg) {
		socks = append(socks, cfg.node2ContainerdSock())
	}
	for _, sock := range socks {
		args := append([]string{"--address", sock, "--namespace", "k8s.io", "images", "import"}, flags...)
		if _, err := run(ctx, filepath.Join(cfg.binDir(), "ctr"), append(args, tarPath)...); err != nil {
			return err
		}
	}
	return nil
}
