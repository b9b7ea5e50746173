package app

import (
	"context"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
)

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"help", []string{"--help"}, cmdutil.ExitOK},
		{"client version", []string{"version", "--client"}, cmdutil.ExitOK},
		{"unknown command", []string{"intercep"}, cmdutil.ExitUser},
		{"unknown flag", []string{"version", "--bogus"}, cmdutil.ExitUser},
		{"bad output", []string{"version", "-o", "xml"}, cmdutil.ExitUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _, _ := genericiooptions.NewTestIOStreams()
			err := Run(context.Background(), streams, "tether", tt.args)
			if got := cmdutil.ExitCode(err); got != tt.want {
				t.Errorf("exit code = %d (err %v), want %d", got, err, tt.want)
			}
		})
	}
}

func TestKubectlPluginName(t *testing.T) {
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	if err := Run(context.Background(), streams, "/usr/local/bin/kubectl-tether", []string{"--help"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl tether [command]") {
		t.Errorf("help does not read as a kubectl plugin:\n%s", out)
	}
	for _, flag := range []string{"--kubeconfig", "--context", "--namespace"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help lacks kubectl flag %s", flag)
		}
	}
}
