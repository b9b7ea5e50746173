package app

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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

// TestHelpTeaches: every command says what it does and shows how to run
// it, and every command that prints data offers it to scripts with -o.
func TestHelpTeaches(t *testing.T) {
	// These write data in a format of their own (HAR, curl, JSON lines, a report) or
	// print none (the daemon logs to its file; tether run's output is CMD's).
	noOutputFlag := map[string]bool{
		"tether requests export": true, "tether requests save": true, "tether daemon run": true, "tether run": true,
		"tether session report": true, // a Markdown or HTML document
	}
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			path := sub.CommandPath()
			if sub.Long == "" || sub.Example == "" {
				t.Errorf("%s: help lacks Long or Example", path)
			}
			if sub.Runnable() && !noOutputFlag[path] && sub.Flags().Lookup("output") == nil {
				t.Errorf("%s: no -o json|yaml", path)
			}
			walk(sub)
		}
	}
	walk(NewRootCommand(streams, "tether"))
}

func TestWrongArgumentsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"intercept"}, {"leave"}, {"trace", "deploy/frontend"}, {"requests", "show", "orders"}, {"status", "now"}, {"rollback", "a", "b"},
	} {
		streams, _, _, _ := genericiooptions.NewTestIOStreams()
		err := Run(context.Background(), streams, "tether", args)
		if got := cmdutil.ExitCode(err); got != cmdutil.ExitUser || !strings.Contains(err.Error(), "--help") {
			t.Errorf("tether %s: exit %d (%v), want %d and a pointer to --help", strings.Join(args, " "), got, err, cmdutil.ExitUser)
		}
	}
}
