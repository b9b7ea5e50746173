package logs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
)

func TestNewCmdLogs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantTail int
		wantOut  string
		wantErr  string
	}{
		{name: "defaults", wantTail: 200},
		{name: "whole log as json", args: []string{"--tail", "0", "-o", "json"}, wantTail: 0, wantOut: "json"},
		{name: "negative tail", args: []string{"--tail", "-1"}, wantErr: "--tail must be 0 (everything) or more, got -1"},
		{name: "an argument", args: []string{"daemon"}, wantErr: `unknown command "daemon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *LogsOptions
			cmd := NewCmdLogs(cmdtest.Factory(t, streams), func(_ context.Context, o *LogsOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Tail != tt.wantTail || got.Output != tt.wantOut || got.Context != "test" ||
				!strings.HasPrefix(got.LogPath, os.Getenv("XDG_RUNTIME_DIR")) || !strings.HasSuffix(got.LogPath, ".log") {
				t.Errorf("got tail %d, output %q, context %q, log %s", got.Tail, got.Output, got.Context, got.LogPath)
			}
		})
	}
}

func TestLogsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    LogsOptions
		want string
	}{
		{"valid", LogsOptions{Tail: 10}, ""},
		{"everything", LogsOptions{Tail: 0, Output: "yaml"}, ""},
		{"negative tail", LogsOptions{Tail: -5}, "--tail must be 0 (everything) or more, got -5"},
		{"bad output", LogsOptions{Output: "text"}, "use -o json or -o yaml, or leave -o out for text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
			}
		})
	}
}

func TestLogsRun(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	content := `{"level":"INFO","msg":"daemon starting"}
{"level":"INFO","msg":"intercept"}
panic: boom
{"level":"ERROR","msg":"tunnel broke"}
`
	if err := os.WriteFile(log, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tail    int
		output  string
		wantOut string
	}{
		{name: "tail", tail: 2, wantOut: "panic: boom\n{\"level\":\"ERROR\",\"msg\":\"tunnel broke\"}\n"},
		{name: "everything", tail: 0, wantOut: content},
		{name: "json", tail: 2, output: "json", wantOut: `[
  "panic: boom",
  {
    "level": "ERROR",
    "msg": "tunnel broke"
  }
]
`},
		{name: "yaml", tail: 1, output: "yaml", wantOut: "- level: ERROR\n  msg: tunnel broke\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, out, _ := cmdtest.Streams()
			o := &LogsOptions{IOStreams: streams, Tail: tt.tail, Output: tt.output, Context: "test", LogPath: log,
				Open: func(name string) (io.ReadCloser, error) { return os.Open(name) }}
			if err := o.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantOut, out.String()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsRunWithoutLog(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	o := &LogsOptions{IOStreams: streams, Context: "test", LogPath: filepath.Join(t.TempDir(), "none.log"),
		Open: func(name string) (io.ReadCloser, error) { return os.Open(name) }}
	err := o.Run(context.Background())
	cmdtest.WantError(t, err, cmdutil.ExitUser, "no daemon log yet for context test")
}
