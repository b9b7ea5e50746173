// Package logs implements `tether logs`.
package logs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/internal/errdefs"
)

// LogsOptions are the flags and dependencies of `tether logs`.
type LogsOptions struct {
	genericiooptions.IOStreams

	Tail   int
	Output string

	// Filled by Complete: the kube context and its daemon's log file.
	Context string
	LogPath string

	Target func() (cmdutil.Target, error)
	Open   func(name string) (io.ReadCloser, error)
}

// NewCmdLogs returns the logs command; runF replaces Run in tests.
func NewCmdLogs(f *cmdutil.Factory, runF func(context.Context, *LogsOptions) error) *cobra.Command {
	o := &LogsOptions{
		IOStreams: f.IOStreams,
		Target:    f.Target,
		Open:      func(name string) (io.ReadCloser, error) { return os.Open(name) },
	}
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print the daemon's log for the current kube context",
		Long: `Print the log of the current kube context's daemon: what it did for each
command, and the errors behind a message that says "details: tether logs".
Each line is a JSON object (time, level, msg and its attributes). The log
stays after the daemon stops.

-o json or -o yaml prints the selected lines as one list, for scripts.`,
		Example: `  tether logs
  tether logs --tail 0   # the whole log
  tether logs --tail 20 -o json | jq '.[] | select(.level == "ERROR")'`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().IntVar(&o.Tail, "tail", 200, "print only the last N lines; 0 prints everything")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete finds the context's log file.
func (o *LogsOptions) Complete([]string) error {
	t, err := o.Target()
	if err != nil {
		return err
	}
	o.Context, o.LogPath = t.Context, t.Paths.Log
	return nil
}

// Validate checks the options without I/O.
func (o *LogsOptions) Validate() error {
	if o.Tail < 0 {
		return errdefs.User("--tail must be 0 (everything) or more, got %d", o.Tail)
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Run prints the log's last lines.
func (o *LogsOptions) Run(context.Context) error {
	file, err := o.Open(o.LogPath)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.User("no daemon log yet for context %s (%s): the daemon has not run", o.Context, o.LogPath)
	}
	if err != nil {
		return err
	}
	defer file.Close()
	var lines []string
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if o.Tail > 0 && len(lines) > o.Tail {
			lines = lines[1:]
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", o.LogPath, err)
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, entries(lines))
	}
	for _, l := range lines {
		fmt.Fprintln(o.Out, l)
	}
	return nil
}

// entries are the lines as JSON values: the daemon's JSON records as they
// are, anything else (a panic's stack, say) as a string.
func entries(lines []string) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(lines))
	for _, l := range lines {
		if json.Valid([]byte(l)) {
			out = append(out, json.RawMessage(l))
			continue
		}
		s, _ := json.Marshal(l)
		out = append(out, s)
	}
	return out
}
