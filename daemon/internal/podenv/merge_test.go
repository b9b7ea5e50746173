package podenv

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	spec := Result{
		Vars: []Var{
			{Name: "DB_HOST", Value: "db2", Source: "configmap/app key DB_HOST"},
			{Name: "TOKEN", Value: "t", Source: "secret/creds key token", Secret: true},
			{Name: "NEW", Value: "n", Source: "configmap/app key NEW"},
		},
		Warnings: []string{"earlier", "TOKEN: a warning the process's value settles"},
	}
	environ := []string{"PATH=/bin", "HOSTNAME=web-1", "TOKEN=t", "DB_HOST=db", "LANG=C.UTF-8", "TOKEN=second", "junk"}
	got := Merge(spec, environ)
	want := []Var{
		{Name: "PATH", Value: "/bin", Source: "image (or the runtime's default)"},
		{Name: "HOSTNAME", Value: "web-1", Source: "runtime"},
		{Name: "TOKEN", Value: "t", Source: "secret/creds key token", Secret: true},
		{Name: "DB_HOST", Value: "db", Source: "configmap/app key DB_HOST"},
		{Name: "LANG", Value: "C.UTF-8", Source: "image"},
	}
	if diff := cmp.Diff(want, got.Vars); diff != "" {
		t.Errorf("vars (-want +got):\n%s", diff)
	}
	wantWarn := []string{"earlier", "DB_HOST: the process's value differs", "NEW: the spec gives it now"}
	if len(got.Warnings) != len(wantWarn) {
		t.Fatalf("warnings = %q", got.Warnings)
	}
	for i, w := range wantWarn {
		if !strings.HasPrefix(got.Warnings[i], w) {
			t.Errorf("warning %d = %q, want %q...", i, got.Warnings[i], w)
		}
	}
}

// TestMergeLeftOut: what the spec could not compute but the process has
// keeps its source, and the warning about it goes.
func TestMergeLeftOut(t *testing.T) {
	spec := Result{
		Warnings: []string{"CPU: the container sets no cpu limit, so ... left out", kubernetesLinks + ": you may not list ...", "keys [x] ... skipped"},
		LeftOut:  map[string]string{"CPU": "resourceFieldRef limits.cpu"},
	}
	got := Merge(spec, []string{"CPU=2", "KUBERNETES_SERVICE_HOST=10.43.0.1", "KUBERNETES_PORT_443_TCP=tcp://10.43.0.1:443"})
	want := []Var{
		{Name: "CPU", Value: "2", Source: "resourceFieldRef limits.cpu"},
		{Name: "KUBERNETES_SERVICE_HOST", Value: "10.43.0.1", Source: "service link service/kubernetes"},
		{Name: "KUBERNETES_PORT_443_TCP", Value: "tcp://10.43.0.1:443", Source: "service link service/kubernetes"},
	}
	if diff := cmp.Diff(want, got.Vars); diff != "" {
		t.Errorf("vars (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"keys [x] ... skipped"}, got.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}
