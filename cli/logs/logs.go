// Package logs implements `tether logs`.
package logs

import (
	"bufio"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/internal/errdefs"
)

// NewCmdLogs returns the logs command.
func NewCmdLogs(f *cmdutil.Factory) *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print the daemon's log for the current kube context",
		Example: `  tether logs
  tether logs --tail 0   # the whole log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tail < 0 {
				return errdefs.User("--tail must be 0 (everything) or more, got %d", tail)
			}
			t, err := f.Target()
			if err != nil {
				return err
			}
			file, err := os.Open(t.Paths.Log)
			if os.IsNotExist(err) {
				return errdefs.User("no daemon log yet for context %s (%s): the daemon has not run", t.Context, t.Paths.Log)
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
				if tail > 0 && len(lines) > tail {
					lines = lines[1:]
				}
			}
			for _, l := range lines {
				fmt.Fprintln(f.IOStreams.Out, l)
			}
			return sc.Err()
		},
	}
	cmd.Flags().IntVar(&tail, "tail", 200, "print only the last N lines; 0 prints everything")
	return cmd
}
