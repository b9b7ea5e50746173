package requests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

func newCmdExport(o *Options) *cobra.Command {
	var format, file, base string
	cmd := &cobra.Command{
		Use:   "export WORKLOAD [--format har|curl] [-f FILE]",
		Short: "Export recorded requests as HAR 1.2 (for browsers' and other tools' HAR importers) or curl command lines",
		Example: `  tether requests export orders --status 5xx -f failures.har
  tether requests export orders --path /orders --format curl --base http://localhost:8080`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			if format != "har" && format != "curl" {
				return errdefs.User("--format %q: choose har or curl", format)
			}
			f, err := o.FilterFromFlags()
			if err != nil {
				return err
			}
			w, done, err := output(file, o)
			if err != nil {
				return err
			}
			got, _, err := o.read(cmd.Context(), daemon.RequestsRequest{Namespace: o.Namespace, Workload: o.Workload, Filter: f, Limit: o.Limit})
			if err != nil {
				done(false)
				return err
			}
			if format == "curl" {
				writeCurl(w, got, base)
			} else {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(recording.ToHAR(got, Ref, buildinfo.Get().Version)); err != nil {
					done(false)
					return err
				}
			}
			if err := done(true); err != nil {
				return err
			}
			if file != "" && file != "-" {
				fmt.Fprintf(o.ErrOut, "wrote %d requests to %s\n", len(got), file)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "har", "har or curl")
	cmd.Flags().StringVarP(&file, "file", "f", "-", "where to write; - for stdout")
	cmd.Flags().StringVar(&base, "base", "http://localhost:8080", "for curl: the scheme and host the commands call")
	addFilterFlags(cmd, o)
	return cmd
}

// writeCurl writes a shell command per exchange, each after a comment
// that names it; recorded text in comments is escaped onto one line.
func writeCurl(w io.Writer, exs []*recording.Exchange, base string) {
	for _, e := range exs {
		fmt.Fprintf(w, "# %s %s %s -> %d\n%s\n", recording.Printable(Ref(e)), recording.Printable(e.Request.Method),
			recording.Printable(e.Request.Target), e.Status(), recording.Curl(e, base))
	}
}

func newCmdSave(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save WORKLOAD FILE",
		Short: "Save recorded requests, bodies included, to keep them after the agent is gone (replay them with --from FILE)",
		Example: `  tether requests save orders incident-42.json --since 30m
  tether replay --from incident-42.json --to local:8080`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args[:1]); err != nil {
				return err
			}
			f, err := o.FilterFromFlags()
			if err != nil {
				return err
			}
			w, done, err := output(args[1], o)
			if err != nil {
				return err
			}
			got, _, err := o.read(cmd.Context(), daemon.RequestsRequest{Namespace: o.Namespace, Workload: o.Workload, Filter: f, Limit: o.Limit})
			if err != nil {
				done(false)
				return err
			}
			if err := recording.WriteJSONL(w, got); err != nil {
				done(false)
				return err
			}
			if err := done(true); err != nil {
				return err
			}
			fmt.Fprintf(o.ErrOut, "saved %d requests to %s\n", len(got), args[1])
			return nil
		},
	}
	addFilterFlags(cmd, o)
	return cmd
}

// output opens where to write: stdout for "-", else a temporary file next
// to path that done(true) renames into place, so a failed command leaves
// no half-written file (and an existing one untouched).
func output(path string, o *Options) (io.Writer, func(ok bool) error, error) {
	if path == "-" || path == "" {
		return o.Out, func(bool) error { return nil }, nil
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, errdefs.User("cannot write %s: %v", path, err)
	}
	bw := bufio.NewWriter(tmp)
	return bw, func(ok bool) error {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil
		}
		if err := bw.Flush(); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return err
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		return os.Rename(tmp.Name(), path)
	}, nil
}

// ReadFile reads a file written by `requests save` or `requests export
// --format har` (or any HAR 1.2 file).
func ReadFile(path string) ([]*recording.Exchange, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, errdefs.User("read %s: %v", path, err)
	}
	var exs []*recording.Exchange
	if isHAR(raw) {
		exs, err = recording.ReadHAR(bytes.NewReader(raw))
	} else {
		exs, err = recording.ReadJSONL(bytes.NewReader(raw))
	}
	if err != nil {
		return nil, errdefs.User("%s: %v (want a file from `tether requests save` or a HAR file)", path, err)
	}
	return exs, nil
}

// isHAR reports whether the document's first key is "log", as in HAR.
func isHAR(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	t, err := dec.Token()
	return err == nil && t == "log"
}
