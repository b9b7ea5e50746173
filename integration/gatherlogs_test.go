//go:build integration

package integration

import (
	"archive/zip"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGatherLogs: after a recording (a sidecar agent and a journal) and a
// trace (an ephemeral agent), the zip holds the daemon's log, both agents'
// logs, the journal, status and versions, and none of the agent tokens
// the cluster's Secrets hold.
func TestGatherLogs(t *testing.T) {
	e := newEnv(t)
	e.deployOrders(1)
	client := e.clientPod("client")
	e.mustTether(agentImage("record", "orders", "--port", "http")...)
	e.mustTether(agentImage("trace", client, "svc/orders")...)
	file := filepath.Join(t.TempDir(), "bundle.zip")
	e.mustTether("gather-logs", "-f", file)

	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
	}
	var sidecar, ephemeral, journal bool
	for name, body := range files {
		switch {
		case strings.HasPrefix(name, "agents/"+e.ns+"/orders-") && strings.HasSuffix(name, "/tether-agent.log"):
			sidecar = strings.Contains(body, "agent serving")
		case strings.HasPrefix(name, "agents/"+e.ns+"/"+client+"/"):
			ephemeral = strings.Contains(body, "agent serving")
		case strings.HasPrefix(name, "journals/"+e.ns+"/"):
			journal = true
		}
	}
	if !sidecar || !ephemeral || !journal {
		t.Errorf("sidecar log %v, ephemeral agent log %v, journal %v; zip holds %v", sidecar, ephemeral, journal, keys(files))
	}
	for _, name := range []string{"MANIFEST.txt", "versions.json", "status.json", "daemon.log"} {
		if files[name] == "" {
			t.Errorf("%s missing or empty", name)
		}
	}
	if !strings.Contains(files["status.json"], `"connected": true`) {
		t.Errorf("status.json: %s", files["status.json"])
	}
	secrets, err := e.cs.CoreV1().Secrets(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range secrets.Items {
		for _, v := range s.Data {
			if len(v) < 16 {
				continue
			}
			n++
			for name, body := range files {
				if strings.Contains(body, string(v)) {
					t.Errorf("%s holds the value of secret %s", name, s.Name)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no Secret of tether's found to check the zip against")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
