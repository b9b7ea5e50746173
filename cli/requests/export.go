package requests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherkube/tether/cli/cmdutil"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
)

// CreateFile opens path for writing so that nothing appears there until
// done(true): done(false) leaves no file behind, and an existing one
// untouched.
type CreateFile func(path string) (w io.Writer, done func(ok bool) error, err error)

// ExportOptions are the flags and dependencies of `tether requests export`.
type ExportOptions struct {
	WorkloadOptions
	FilterFlags

	Format, File, Base string

	Now    func() time.Time
	Create CreateFile
}

// NewCmdExport returns `requests export`; runF replaces Run in tests.
func NewCmdExport(f *cmdutil.Factory, runF func(context.Context, *ExportOptions) error) *cobra.Command {
	o := &ExportOptions{WorkloadOptions: newWorkloadOptions(f), Now: time.Now, Create: createAtomic}
	cmd := &cobra.Command{
		Use:   "export WORKLOAD [--format har|curl] [-f FILE]",
		Short: "Export recorded requests as HAR 1.2 (for browsers' and other tools' HAR importers) or curl command lines",
		Long: `Write the selected exchanges of WORKLOAD as a HAR 1.2 file, which browsers'
developer tools and other HTTP tools import, or as curl command lines that
send the requests again to --base. Without -f, or with -f -, it writes to
stdout. A file is written whole or not at all.`,
		Example: `  tether requests export orders --status 5xx -f failures.har
  tether requests export orders --path /orders --format curl --base http://localhost:8080`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVar(&o.Format, "format", "har", "har or curl")
	cmd.Flags().StringVarP(&o.File, "file", "f", "-", "where to write; - for stdout")
	cmd.Flags().StringVar(&o.Base, "base", "http://localhost:8080", "for curl: the scheme and host the commands call")
	AddFilterFlags(cmd, &o.FilterFlags)
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

// Complete takes WORKLOAD and resolves the namespace.
func (o *ExportOptions) Complete(args []string) error { return o.complete(args[0]) }

// Validate checks the options without I/O.
func (o *ExportOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Format != "har" && o.Format != "curl" {
		return errdefs.User("--format %q: choose har or curl", o.Format)
	}
	return o.FilterFlags.Validate()
}

// Run reads the selected exchanges and writes them.
func (o *ExportOptions) Run(ctx context.Context) error {
	n, err := o.writeSelected(ctx, &o.FilterFlags, o.Now(), o.Create, o.File, func(w io.Writer, got []*recording.Exchange) error {
		if o.Format == "curl" {
			writeCurl(w, got, o.Base)
			return nil
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(recording.ToHAR(got, Ref, buildinfo.Get().Version))
	})
	if err != nil {
		return err
	}
	if o.File != "" && o.File != "-" {
		fmt.Fprintf(o.ErrOut, "wrote %d requests to %s\n", n, o.File)
	}
	return nil
}

// writeSelected reads the exchanges ff selects, bodies included, and has
// write put them on stdout (path "-") or into path, whole or not at all;
// it returns how many there were.
func (o *WorkloadOptions) writeSelected(ctx context.Context, ff *FilterFlags, now time.Time, create CreateFile, path string,
	write func(io.Writer, []*recording.Exchange) error) (int, error) {
	f, err := ff.Filter(now)
	if err != nil {
		return 0, err
	}
	w, done, err := openOutput(o.Out, create, path)
	if err != nil {
		return 0, err
	}
	got, _, err := o.read(ctx, daemon.RequestsRequest{Namespace: o.Ns, Workload: o.Workload, Filter: f, Limit: ff.Limit})
	if err == nil {
		err = write(w, got)
	}
	if err != nil {
		done(false)
		return 0, err
	}
	return len(got), done(true)
}

// openOutput returns stdout for "-", else create(path).
func openOutput(stdout io.Writer, create CreateFile, path string) (io.Writer, func(ok bool) error, error) {
	if path == "-" || path == "" {
		return stdout, func(bool) error { return nil }, nil
	}
	return create(path)
}

// SaveOptions are the flags and dependencies of `tether requests save`.
type SaveOptions struct {
	WorkloadOptions
	FilterFlags

	File string

	Now    func() time.Time
	Create CreateFile
}

// NewCmdSave returns `requests save`; runF replaces Run in tests.
func NewCmdSave(f *cmdutil.Factory, runF func(context.Context, *SaveOptions) error) *cobra.Command {
	o := &SaveOptions{WorkloadOptions: newWorkloadOptions(f), Now: time.Now, Create: createAtomic}
	cmd := &cobra.Command{
		Use:   "save WORKLOAD FILE",
		Short: "Save recorded requests, bodies included, to keep them after the agent is gone (replay them with --from FILE)",
		Long: `Save the selected exchanges of WORKLOAD, bodies included, to FILE (one JSON
object per line), to keep them after the agent is gone or its budget evicts
them. ` + "`tether replay --from FILE`" + ` sends them again. FILE is written whole or
not at all.`,
		Example: `  tether requests save orders incident-42.json --since 30m
  tether replay --from incident-42.json --to local:8080`,
		Args: cmdutil.Args(cobra.ExactArgs(2)),
		RunE: cmdutil.RunE(o, runF),
	}
	AddFilterFlags(cmd, &o.FilterFlags)
	return cmd
}

// Complete takes WORKLOAD and FILE and resolves the namespace.
func (o *SaveOptions) Complete(args []string) error {
	o.File = args[1]
	return o.complete(args[0])
}

// Validate checks the options without I/O.
func (o *SaveOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.File == "" {
		return errdefs.User("name the file to save to, e.g. tether requests save %s incident.json (- for stdout)", o.Workload)
	}
	return o.FilterFlags.Validate()
}

// Run reads the selected exchanges, bodies included, and saves them.
func (o *SaveOptions) Run(ctx context.Context) error {
	n, err := o.writeSelected(ctx, &o.FilterFlags, o.Now(), o.Create, o.File, recording.WriteJSONL)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.ErrOut, "saved %d requests to %s\n", n, o.File)
	return nil
}

// createAtomic writes to a temporary file next to path that done(true)
// renames into place, so a failed command leaves no half-written file
// (and an existing one untouched).
func createAtomic(path string) (io.Writer, func(ok bool) error, error) {
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
