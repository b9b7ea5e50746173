package gatherlogs

import (
	"archive/zip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
)

func TestNewCmdGatherLogs(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	var got *GatherOptions
	cmd := NewCmdGatherLogs(cmdtest.Factory(t, streams), func(_ context.Context, o *GatherOptions) error { got = o; return nil })
	if err := cmdtest.Exec(cmd, "-A"); err != nil {
		t.Fatal(err)
	}
	if !got.AllNamespaces || !strings.HasPrefix(got.File, "tether-logs-") || !strings.HasSuffix(got.File, ".zip") {
		t.Errorf("got %+v", got)
	}
	err := cmdtest.Exec(NewCmdGatherLogs(cmdtest.Factory(t, streams), nil), "-f", "logs.tar")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `-f "logs.tar": name a .zip file`)
}

// readZip returns the files of a zip by name.
func readZip(t *testing.T, path string) map[string]string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = string(b)
	}
	return out
}

func TestGatherLogsRun(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "d.log")
	os.WriteFile(logPath, []byte(`{"level":"INFO","msg":"dial","token":"s3cr3t-token"}`+"\n"), 0o600)
	cs := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-1", Namespace: "shop"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "orders"}, {Name: "tether-agent"}},
				EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "tether-inspect-1", Image: "x/tether-agent:dev"}}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "tether-agent", RestartCount: 1}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "shop"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tether-journal-deploy-orders", Namespace: "shop", Labels: map[string]string{labelJournal: "true"}},
			Data: map[string]string{"entries": `{"template":{"env":[{"name":"API_TOKEN","value":"t0k3n"}]}}`}},
	)
	streams, out, errOut := cmdtest.Streams()
	o := &GatherOptions{IOStreams: streams, File: filepath.Join(dir, "b.zip"),
		Target:        cmdutil.Target{Context: "k3s", Namespace: "shop", Paths: daemon.Paths{Log: logPath}},
		KubeClient:    func() (kubernetes.Interface, error) { return cs, nil },
		DaemonService: func(context.Context) (daemon.Service, func(), error) { return nil, nil, cmdutil.ErrNoDaemon },
		Now:           func() time.Time { return time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) }}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := readZip(t, o.File)
	for _, name := range []string{"MANIFEST.txt", "versions.json", "status.json", "daemon.log",
		"agents/shop/orders-1/tether-agent.log", "agents/shop/orders-1/tether-agent.previous.log",
		"agents/shop/orders-1/tether-inspect-1.log", "journals/shop/tether-journal-deploy-orders.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("%s missing from the zip; it has %v", name, keys(files))
		}
	}
	if len(files) != 8 {
		t.Errorf("zip has %d files, want 8: %v", len(files), keys(files))
	}
	for name, body := range files {
		for _, secret := range []string{"s3cr3t-token", "t0k3n"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s holds %q:\n%s", name, secret, body)
			}
		}
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(files["status.json"]), &st); err != nil || st["connected"] != false {
		t.Errorf("status.json: %v %s", err, files["status.json"])
	}
	if !strings.Contains(out.String(), "wrote "+o.File+": 7 files and MANIFEST.txt") || errOut.String() != "" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}

	// A file that cannot be written: an error, and nothing left behind.
	o.File = filepath.Join(dir, "missing-dir", "b.zip")
	if err := o.Run(context.Background()); err == nil {
		t.Error("writing into a missing folder succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tether-logs-") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
