// Package capture implements `tether capture`.
package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/internal/pktfilter"
)

// CaptureOptions are the flags and dependencies of `tether capture`.
type CaptureOptions struct {
	genericiooptions.IOStreams

	Pod, Container, Interface, Filter, Write, AgentImage string
	Count                                                uint64
	Duration                                             time.Duration
	Snaplen                                              int
	Output                                               string

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Create opens the -w file, once the first packet arrives.
	Create func(name string) (io.WriteCloser, error)
}

// Packet is one captured packet as -o json|yaml prints it.
type Packet struct {
	Time           time.Time `json:"time"`
	Length         int       `json:"length"`
	CapturedLength int       `json:"capturedLength"`
	Summary        string    `json:"summary"`
}

// NewCmdCapture returns the capture command; runF replaces Run in tests.
// createPrivate creates (or truncates) a file only its user may read: a
// capture holds every byte on the wire, secrets included, unredacted.
func createPrivate(name string) (io.WriteCloser, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	// An existing file keeps its mode through O_TRUNC: close it too.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func NewCmdCapture(f *cmdutil.Factory, runF func(context.Context, *CaptureOptions) error) *cobra.Command {
	o := &CaptureOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
		Create:        createPrivate,
	}
	cmd := &cobra.Command{
		Use:   "capture POD [-c CONTAINER] [--filter EXPR] [-w FILE|-]",
		Short: "Capture a pod's packets as pcap, without restarting it",
		Long: `Capture the packets of a pod's network namespace. tether adds its agent to
the running pod as an ephemeral container with CAP_NET_RAW (the pod is not
restarted; the ephemeral container stays listed on the pod, terminated, after
use) and streams the packets through the API server.

EXPR is tcpdump's filter language: host, net, port, portrange, src/dst,
tcp/udp/icmp/ip/ip6, and/or/not and parentheses; it runs in the kernel.
Without -w, one line per packet is printed; -w FILE writes pcap, and -w -
streams pcap to stdout for Wireshark; -o json or -o yaml prints each
packet's time, lengths and summary line for scripts. Ctrl-C ends the
capture cleanly.`,
		Example: `  tether capture orders-7d9c-x2x --filter 'tcp port 8080' -w orders.pcap
  tether capture pod/orders-7d9c-x2x -w - | wireshark -k -i -
  tether capture orders-7d9c-x2x --filter 'udp port 53' --count 20
  tether capture orders-7d9c-x2x -c app --duration 10s -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().StringVarP(&o.Container, "container", "c", "", "the container whose processes the agent joins (default: the pod's network namespace only)")
	cmd.Flags().StringVar(&o.Interface, "interface", "eth0", "the pod's network interface")
	cmd.Flags().StringVar(&o.Filter, "filter", "", "tcpdump-style filter, e.g. 'tcp port 8080 and not host 10.42.0.1'")
	cmd.Flags().StringVarP(&o.Write, "write", "w", "", "write pcap to FILE, or to stdout with -")
	cmd.Flags().Uint64Var(&o.Count, "count", 0, "stop after N packets (0: no limit)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 0, "stop after this long, e.g. 30s (0: until Ctrl-C)")
	cmd.Flags().IntVar(&o.Snaplen, "snaplen", 262144, "bytes kept of each packet")
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes POD, resolves the namespace and checks that the -w file
// can be written, before anything is asked of the cluster.
func (o *CaptureOptions) Complete(args []string) error {
	o.Pod = args[0]
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return checkWritable(o.Write)
}

// checkWritable says why path cannot be written, when it cannot.
func checkWritable(path string) error {
	if path == "" || path == "-" {
		return nil
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return errdefs.User("cannot write %s: folder %s does not exist", path, dir)
	}
	if err := writable(dir); err != nil {
		return errdefs.User("cannot write %s: folder %s is not writable", path, dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return errdefs.User("cannot write %s: it is a folder", path)
	}
	return nil
}

// Validate checks the options without I/O.
func (o *CaptureOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if o.Output != cmdutil.OutputText && o.Write != "" {
		return errdefs.User("-w writes pcap and -o %s prints packets as %s: choose one", o.Output, o.Output)
	}
	if _, err := pktfilter.Parse(o.Filter); err != nil {
		return errdefs.Mark(errdefs.ErrUser, err)
	}
	if o.Snaplen <= 0 || o.Snaplen > 262144 {
		return errdefs.User("--snaplen must be 1 to 262144, got %d", o.Snaplen)
	}
	if o.Duration < 0 {
		return errdefs.User("--duration must not be negative")
	}
	return nil
}

// Run captures until count, duration or Ctrl-C.
func (o *CaptureOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()

	var out io.Writer
	var file io.WriteCloser
	var pcap *pcapgo.Writer
	var lines *bufio.Writer
	switch o.Write {
	case "":
		if o.Output == cmdutil.OutputText {
			lines = bufio.NewWriter(o.Out)
			defer lines.Flush()
		}
	case "-":
		out = o.Out
	default:
		// Written only once the first packet arrives, so a capture refused
		// up front leaves no file behind.
	}
	captured := 0
	emit := func(p agent.CapturedPacket) error {
		if o.Write != "" && pcap == nil {
			if out == nil {
				f, err := o.Create(o.Write)
				if err != nil {
					return errdefs.User("cannot write %s: %v", o.Write, err)
				}
				file, out = f, f
			}
			pcap = pcapgo.NewWriter(out)
			if err := pcap.WriteFileHeader(uint32(o.Snaplen), layers.LinkTypeEthernet); err != nil {
				return err
			}
		}
		captured++
		if pcap != nil {
			return pcap.WritePacket(gopacket.CaptureInfo{Timestamp: p.Timestamp, CaptureLength: len(p.Data), Length: p.Length}, p.Data)
		}
		if o.Output != cmdutil.OutputText {
			return cmdutil.PrintItem(o.Out, o.Output, Packet{Time: p.Timestamp, Length: p.Length, CapturedLength: len(p.Data), Summary: Summary(p)})
		}
		fmt.Fprintln(lines, Summary(p))
		if captured%32 == 0 {
			return lines.Flush()
		}
		return nil
	}
	stats, err := client.Capture(ctx, daemon.CaptureRequest{
		Namespace: o.Ns, Pod: o.Pod, Container: o.Container, Interface: o.Interface, Filter: o.Filter,
		Snaplen: o.Snaplen, Count: o.Count, Duration: o.Duration, AgentImage: o.AgentImage,
	}, func(line string) { fmt.Fprintln(o.ErrOut, line) }, agent.EachPacket(emit))
	if file != nil {
		if cerr := file.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if lines != nil {
		lines.Flush()
	}
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintf(o.ErrOut, "capture stopped: %d packets\n", captured)
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(o.ErrOut, "%d packets captured; kernel: %d received by the filter, %d dropped\n", captured, stats.Received, stats.Dropped)
	return nil
}
