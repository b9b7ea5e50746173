package env

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdEnv(t *testing.T) {
	type opts struct{ Target, Container, Format, File, FilesDir, Source, Ns string }
	tests := []struct {
		name    string
		args    []string
		want    opts
		show    bool
		wantErr string
	}{
		{name: "defaults", args: []string{"deploy/orders"}, want: opts{Target: "deploy/orders", Format: "dotenv", Source: "auto", Ns: "shop"}},
		{name: "everything", args: []string{"pod/orders-1", "-c", "app", "--format", "shell", "-f", "x.env", "--files", "dir", "--source", "process", "--show-secrets"},
			want: opts{Target: "pod/orders-1", Container: "app", Format: "shell", File: "x.env", FilesDir: "dir", Source: "process", Ns: "shop"}, show: true},
		{name: "-o json", args: []string{"orders-1", "-o", "json"}, want: opts{Target: "orders-1", Format: "json", Source: "auto", Ns: "shop"}},
		{name: "no target", args: []string{}, wantErr: "accepts 1 arg(s), received 0"},
		{name: "bad format", args: []string{"x", "--format", "xml"}, wantErr: `unknown format "xml": use dotenv, shell, json, yaml`},
		{name: "bad source", args: []string{"x", "--source", "image"}, wantErr: `unknown source "image"`},
		{name: "files with spec", args: []string{"x", "--files", "d", "--source", "spec"}, wantErr: "--files reads the volumes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *EnvOptions
			cmd := NewCmdEnv(cmdtest.Factory(t, streams), func(_ context.Context, o *EnvOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := opts{got.Target, got.Container, got.Format, got.File, got.FilesDir, got.Source, got.Ns}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.ShowSecrets != tt.show || got.AgentImage == "" {
				t.Errorf("show-secrets %v, agent image %q", got.ShowSecrets, got.AgentImage)
			}
		})
	}
}

func TestEnvValidate(t *testing.T) {
	ok := EnvOptions{Target: "deploy/x", Format: "dotenv", Source: "auto"}
	with := func(f func(*EnvOptions)) EnvOptions { o := ok; f(&o); return o }
	tests := []struct {
		name string
		o    EnvOptions
		want string
	}{
		{"valid", ok, ""},
		{"blank target", with(func(o *EnvOptions) { o.Target = " " }), "name a workload or pod"},
		{"format", with(func(o *EnvOptions) { o.Format = "toml" }), `unknown format "toml"`},
		{"source", with(func(o *EnvOptions) { o.Source = "" }), `unknown source ""`},
		{"files and spec", with(func(o *EnvOptions) { o.Source = "spec"; o.FilesDir = "d" }), "--files reads the volumes"},
		{"files and process", with(func(o *EnvOptions) { o.Source = "process"; o.FilesDir = "d" }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		})
	}
}

var result = daemon.EnvResult{
	Pod: "orders-1", Container: "app", Source: daemon.EnvProcess,
	Vars: []daemon.EnvVar{
		{Name: "PATH", Value: "/bin", Source: "image"},
		{Name: "DB_HOST", Value: "db", Source: "configmap/app key DB_HOST"},
		{Name: "TOKEN", Value: "s3 cr'et", Source: "secret/creds key token", Secret: true},
	},
	Files: []daemon.EnvFile{
		{Path: "/etc/app/config.yaml", MountPath: "/etc/app", Mode: 0o644, Data: []byte("a: 1\n")},
		{Path: "/var/run/secrets/kubernetes.io/serviceaccount/token", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", Mode: 0o644, Data: []byte("jwt"), Secret: true},
	},
	NotCopied: []daemon.EnvMount{{MountPath: "/data", Volume: "data", Kind: "persistentVolumeClaim", Reason: "persistent data"}},
	Warnings:  []string{"DB_HOST: the process's value differs"},
}

// runEnv runs o against a fake daemon behind the real gRPC adapter and
// returns stdout, stderr and the request the daemon got.
func runEnv(t *testing.T, o *EnvOptions, res daemon.EnvResult, resErr error) (string, string, daemon.EnvRequest, error) {
	t.Helper()
	streams, out, errOut := cmdtest.Streams()
	var got daemon.EnvRequest
	o.IOStreams = streams
	o.Ns = "shop"
	if o.Terminal == nil {
		o.Terminal = func() bool { return false }
	}
	o.DaemonService = cmdtest.ServeDaemon(t, &cmdtest.FakeService{EnvFunc: func(_ context.Context, req daemon.EnvRequest, progress func(string)) (daemon.EnvResult, error) {
		got = req
		progress("adding the agent")
		return res, resErr
	}})
	err := o.Run(context.Background())
	return out.String(), errOut.String(), got, err
}

func TestRunPipe(t *testing.T) {
	out, errOut, req, err := runEnv(t, &EnvOptions{Target: "deploy/orders", Container: "app", Format: "dotenv", Source: "process", AgentImage: "img"}, result, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantReq := daemon.EnvRequest{Namespace: "shop", Target: "deploy/orders", Container: "app", Source: daemon.EnvProcess, AgentImage: "img"}
	if diff := cmp.Diff(wantReq, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	// To a pipe the secret is written: that is what it is for.
	if want := "PATH=/bin\nDB_HOST=db\nTOKEN=\"s3 cr'et\"\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	for _, w := range []string{"adding the agent", "warning: DB_HOST: the process's value differs"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
}

func TestRunTerminalHidesSecrets(t *testing.T) {
	o := &EnvOptions{Target: "x", Format: "json", Source: "auto", Terminal: func() bool { return true }}
	out, errOut, _, err := runEnv(t, o, result, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3 cr") {
		t.Errorf("a secret printed to the terminal:\n%s", out)
	}
	var obj map[string]string
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, out)
	}
	if obj["TOKEN"] != hiddenValue || obj["DB_HOST"] != "db" {
		t.Errorf("object = %v", obj)
	}
	if !strings.Contains(errOut, "1 secret value hidden") {
		t.Errorf("stderr does not say a value is hidden:\n%s", errOut)
	}

	o = &EnvOptions{Target: "x", Format: "dotenv", Source: "auto", ShowSecrets: true, Terminal: func() bool { return true }}
	if out, _, _, _ := runEnv(t, o, result, nil); !strings.Contains(out, "s3 cr'et") {
		t.Errorf("--show-secrets does not show it:\n%s", out)
	}
}

func TestRunFileAndFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pod.env")
	if err := os.WriteFile(file, []byte("OLD=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := filepath.Join(dir, "root")
	o := &EnvOptions{Target: "x", Format: "dotenv", Source: "auto", File: file, FilesDir: files, Terminal: func() bool { return true }}
	out, errOut, req, err := runEnv(t, o, result, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !req.Files || out != "" {
		t.Errorf("files asked %v; stdout %q", req.Files, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "PATH=/bin\nDB_HOST=db\nTOKEN=\"s3 cr'et\"\nTETHER_ROOT=" + files + "\n"
	if string(b) != want {
		t.Errorf("file = %q, want %q (secrets are written to a file, even from a terminal)", b, want)
	}
	wantMode(t, file, 0o600)
	for _, f := range result.Files {
		p := filepath.Join(files, filepath.FromSlash(f.Path))
		got, err := os.ReadFile(p)
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v; want %q", p, got, err, f.Data)
		}
		wantMode(t, p, 0o600)
	}
	wantMode(t, filepath.Join(files, "etc"), 0o700|os.ModeDir)
	wantMode(t, filepath.Join(files, "var", "run", "secrets"), 0o700|os.ModeDir)
	if !strings.Contains(errOut, "not copied: /data (persistentVolumeClaim volume data): persistent data") {
		t.Errorf("stderr does not list the volume not copied:\n%s", errOut)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d entries in the folder, want pod.env and root (no temporary file left)", len(entries))
	}
}

func wantMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
	}
}

func TestRunError(t *testing.T) {
	_, _, _, err := runEnv(t, &EnvOptions{Target: "x", Format: "dotenv", Source: "auto"}, daemon.EnvResult{},
		errdefs.User(`pod x has no container "nope"; containers: app`))
	cmdtest.WantError(t, err, cmdutil.ExitUser, `pod x has no container "nope"; containers: app`)
}
