// Package gatherlogs implements `tether gather-logs`: one zip with what a
// bug report needs, secrets redacted.
package gatherlogs

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/agentspec"
	"github.com/tetherkube/tether/internal/buildinfo"
	"github.com/tetherkube/tether/internal/errdefs"
)

// Labels and names tether puts on the cluster come from internal/agentspec,
// which the daemon builds its objects from too.
const (
	labelJournal   = agentspec.LabelJournal
	agentContainer = agentspec.Container
	// agentLogBytes bounds each container's log in the bundle (its end).
	agentLogBytes = 8 << 20
)

// GatherOptions are the flags and dependencies of `tether gather-logs`.
type GatherOptions struct {
	genericiooptions.IOStreams

	File          string
	AllNamespaces bool
	Output        string

	// Filled by Complete.
	Target cmdutil.Target

	ResolveTarget func() (cmdutil.Target, error)
	KubeClient    func() (kubernetes.Interface, error)
	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Now           func() time.Time
}

// NewCmdGatherLogs returns the gather-logs command; runF replaces Run in tests.
func NewCmdGatherLogs(f *cmdutil.Factory, runF func(context.Context, *GatherOptions) error) *cobra.Command {
	o := &GatherOptions{IOStreams: f.IOStreams, ResolveTarget: f.Target, KubeClient: f.KubeClient, DaemonService: f.RunningDaemon(), Now: time.Now}
	cmd := &cobra.Command{
		Use:   "gather-logs [-f FILE.zip] [-A]",
		Short: "Write one zip with the daemon's log, the agents' logs, the journals, status and versions, secrets redacted",
		Long: `Collect what a bug report about tether needs into one zip file:

  versions.json        this tether, the daemon, the cluster's Kubernetes
  status.json          what ` + "`tether status -o json`" + ` prints (the running daemon, if any)
  daemon.log           the daemon's log for the current kube context
  agents/NS/POD/C.log  the log of every tether agent container in the
                       namespace (-A: every namespace), sidecars and the
                       ephemeral ones of trace and run, and the previous
                       run's log of a restarted one (the last 8 MiB each)
  journals/NS/NAME.json  tether's journals of what it changed
  MANIFEST.txt         what is in the zip, and what could not be read and why

Bearer tokens, JWTs and every value whose name looks secret
(Authorization, Cookie, token, password, ...) are replaced with
[REDACTED] in every file. Read the zip before you attach it anywhere: logs
can still hold names and addresses of your cluster. The zip is written
whole or not at all.`,
		Example: `  tether gather-logs
  tether gather-logs -f incident-42.zip -A`,
		Args: cmdutil.Args(cobra.NoArgs),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVarP(&o.File, "file", "f", "", "the zip to write (default tether-logs-CONTEXT-TIME.zip here)")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "agents and journals of every namespace, not only the current one")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete resolves the kube context and the file name.
func (o *GatherOptions) Complete([]string) error {
	t, err := o.ResolveTarget()
	if err != nil {
		return err
	}
	o.Target = t
	if o.File == "" {
		ctx := strings.Map(func(r rune) rune {
			if r == '/' || r == ':' || r == '\\' || r == ' ' {
				return '_'
			}
			return r
		}, t.Context)
		o.File = fmt.Sprintf("tether-logs-%s-%s.zip", ctx, o.Now().UTC().Format("20060102T150405Z"))
	}
	return nil
}

// Validate checks the options without I/O.
func (o *GatherOptions) Validate() error {
	if !strings.HasSuffix(strings.ToLower(o.File), ".zip") {
		return errdefs.User("-f %q: name a .zip file", o.File)
	}
	return cmdutil.ValidateOutput(o.Output)
}

// Entry is one file of the bundle.
type Entry struct {
	Name  string `json:"name"`
	Bytes int    `json:"bytes"`
}

// Manifest is what gather-logs wrote: -o json prints it.
type Manifest struct {
	File    string   `json:"file"`
	Entries []Entry  `json:"entries"`
	Missing []string `json:"missing,omitempty"` // what could not be read, and why
}

// bundle collects the files before they are written.
type bundle struct {
	files   map[string][]byte
	missing []string
}

func (b *bundle) add(name string, data []byte) { b.files[name] = data }
func (b *bundle) miss(format string, args ...any) {
	b.missing = append(b.missing, fmt.Sprintf(format, args...))
}
func (b *bundle) addJSON(name string, v any) {
	data, err := json.MarshalIndent(redactValue(roundTrip(v)), "", "  ")
	if err != nil {
		b.miss("%s: %v", name, err)
		return
	}
	b.add(name, append(data, '\n'))
}

// roundTrip turns v into plain JSON values, for redactValue to walk.
func roundTrip(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

// Run gathers everything it can (what it cannot is listed in the
// manifest) and writes the zip.
func (o *GatherOptions) Run(ctx context.Context) error {
	b := &bundle{files: map[string][]byte{}}
	versions := map[string]any{"client": buildinfo.Get(), "context": o.Target.Context, "server": o.Target.Server}
	o.daemonState(ctx, b, versions)
	o.daemonLog(b)
	cs, err := o.KubeClient()
	if err != nil {
		b.miss("the cluster: %v", err)
	} else {
		if sv, err := cs.Discovery().ServerVersion(); err == nil {
			versions["kubernetes"] = sv
		} else {
			b.miss("the cluster's version: %v", err)
		}
		ns := o.Target.Namespace
		if o.AllNamespaces {
			ns = metav1.NamespaceAll
		}
		o.agentLogs(ctx, cs, ns, b)
		o.journals(ctx, cs, ns, b)
	}
	b.addJSON("versions.json", versions)
	m, err := o.write(b)
	if err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText {
		return cmdutil.PrintStructured(o.Out, o.Output, m)
	}
	total := 0
	for _, e := range m.Entries {
		total += e.Bytes
	}
	fmt.Fprintf(o.Out, "wrote %s: %d files and MANIFEST.txt, %d bytes before compression, secrets redacted\n", m.File, len(m.Entries), total)
	for _, miss := range m.Missing {
		fmt.Fprintf(o.ErrOut, "not included: %s\n", miss)
	}
	return nil
}

func (o *GatherOptions) daemonState(ctx context.Context, b *bundle, versions map[string]any) {
	client, done, err := o.DaemonService(ctx)
	switch {
	case errors.Is(err, cmdutil.ErrNoDaemon):
		b.addJSON("status.json", map[string]any{"connected": false})
		return
	case err != nil:
		b.miss("the daemon's status: %v", err)
		return
	}
	defer done()
	st, err := client.Status(ctx)
	if err != nil {
		b.miss("the daemon's status: %v", err)
		return
	}
	b.addJSON("status.json", map[string]any{"connected": true, "daemon": st})
	versions["daemon"] = st.DaemonVersion
}

func (o *GatherOptions) daemonLog(b *bundle) {
	data, err := os.ReadFile(o.Target.Paths.Log)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.miss("daemon.log: no daemon has run for context %s (%s)", o.Target.Context, o.Target.Paths.Log)
	case err != nil:
		b.miss("daemon.log: %v", err)
	default:
		b.add("daemon.log", redactText(data))
	}
}

// agentLogs adds the log of every tether agent container in ns.
func (o *GatherOptions) agentLogs(ctx context.Context, cs kubernetes.Interface, ns string, b *bundle) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.miss("agents' logs: list pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		restarts := map[string]int32{}
		for _, s := range p.Status.ContainerStatuses {
			restarts[s.Name] = s.RestartCount
		}
		for _, c := range agentContainers(&p) {
			for _, previous := range []bool{false, true} {
				if previous && restarts[c] == 0 {
					continue
				}
				limit := int64(agentLogBytes)
				data, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, Previous: previous, LimitBytes: &limit}).DoRaw(ctx)
				name := fmt.Sprintf("agents/%s/%s/%s.log", p.Namespace, p.Name, c)
				if previous {
					name = fmt.Sprintf("agents/%s/%s/%s.previous.log", p.Namespace, p.Name, c)
				}
				if err != nil {
					b.miss("%s: %v", name, err)
					continue
				}
				b.add(name, redactText(data))
			}
		}
	}
}

// agentContainers names p's tether agents: the sidecar, and the
// ephemeral containers running tether's agent image.
func agentContainers(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		if c.Name == agentContainer {
			out = append(out, c.Name)
		}
	}
	for _, c := range p.Spec.EphemeralContainers {
		if strings.HasPrefix(c.Name, "tether-") || strings.Contains(c.Image, "tether-agent") {
			out = append(out, c.Name)
		}
	}
	return out
}

func (o *GatherOptions) journals(ctx context.Context, cs kubernetes.Interface, ns string, b *bundle) {
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: labelJournal})
	if err != nil {
		b.miss("journals: %v", err)
		return
	}
	for _, cm := range cms.Items {
		cm.ManagedFields = nil
		b.addJSON(fmt.Sprintf("journals/%s/%s.json", cm.Namespace, cm.Name), cm)
	}
}

// write writes the zip next to its final name, then renames it: it is
// there whole or not at all.
func (o *GatherOptions) write(b *bundle) (Manifest, error) {
	m := Manifest{File: o.File, Missing: b.missing}
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	fmt.Fprintf(&manifest, "tether gather-logs, %s, context %s\n\n", o.Now().UTC().Format(time.RFC3339), o.Target.Context)
	for _, n := range names {
		m.Entries = append(m.Entries, Entry{Name: n, Bytes: len(b.files[n])})
		fmt.Fprintf(&manifest, "%-60s %d bytes\n", n, len(b.files[n]))
	}
	if len(b.missing) > 0 {
		fmt.Fprintln(&manifest, "\nnot included:")
		for _, miss := range b.missing {
			fmt.Fprintf(&manifest, "  %s\n", miss)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(o.File), ".tether-logs-*.zip")
	if err != nil {
		return m, errdefs.User("write %s: %v", o.File, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	zw := zip.NewWriter(tmp)
	put := func(name string, data []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: o.Now()})
		if err != nil {
			return err
		}
		_, err = io.Copy(w, bytes.NewReader(data))
		return err
	}
	err = put("MANIFEST.txt", manifest.Bytes())
	for _, n := range names {
		if err == nil {
			err = put(n, b.files[n])
		}
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), o.File)
	}
	if err != nil {
		return m, fmt.Errorf("write %s: %w", o.File, err)
	}
	return m, nil
}
