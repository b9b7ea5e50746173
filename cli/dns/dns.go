// Package dns implements `tether dns`: a live view of a pod's DNS queries
// and answers, from its packets.
package dns

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/dnswatch"
	"github.com/tetherkube/tether/internal/errdefs"
)

// SlowAnswer is the latency from which an answer is flagged slow.
const SlowAnswer = 100 * time.Millisecond

// DNSOptions are the flags and dependencies of `tether dns`.
type DNSOptions struct {
	genericiooptions.IOStreams

	Pod        string
	Duration   time.Duration
	Count      int
	AgentImage string
	Output     string

	// Ns is the namespace Complete resolved.
	Ns string

	DaemonService func(ctx context.Context) (daemon.Service, func(), error)
	Namespace     func() (string, error)
	// Now tells when the capture ended, to report the queries left unanswered.
	Now func() time.Time
}

// NewCmdDNS returns the dns command; runF replaces Run in tests.
func NewCmdDNS(f *cmdutil.Factory, runF func(context.Context, *DNSOptions) error) *cobra.Command {
	o := &DNSOptions{
		IOStreams:     f.IOStreams,
		DaemonService: f.DaemonService(),
		Namespace:     f.Namespace(),
		Now:           time.Now,
	}
	cmd := &cobra.Command{
		Use:   "dns POD",
		Short: "Show the DNS queries a pod sends and the answers it gets, live",
		Long: `Show each DNS query leaving the pod with its answer: name, type, rcode,
answers and latency, paired by query id. Search-list expansion storms (several
NXDOMAIN answers before a name resolves) and answers slower than 100 ms are
pointed out. It captures the pod's DNS packets like ` + "`tether capture`" + ` (an ephemeral
container; the pod is not restarted).`,
		Example: `  tether dns orders-7d9c-x2x --duration 30s
  tether dns orders-7d9c-x2x --count 10 -o json`,
		Args: cmdutil.Args(cobra.ExactArgs(1)),
		RunE: cmdutil.RunE(o, runF),
	}
	cmd.Flags().DurationVar(&o.Duration, "duration", 0, "stop after this long (0: until Ctrl-C or --count)")
	cmd.Flags().IntVar(&o.Count, "count", 0, "stop after N answered or expired queries (0: no limit)")
	cmd.Flags().StringVar(&o.AgentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image")
	cmdutil.AddOutputFlag(cmd, &o.Output)
	return cmd
}

// Complete takes POD and resolves the namespace.
func (o *DNSOptions) Complete(args []string) error {
	o.Pod = args[0]
	ns, err := o.Namespace()
	if err != nil {
		return err
	}
	o.Ns = ns
	return nil
}

// Validate checks the options without I/O.
func (o *DNSOptions) Validate() error {
	if err := cmdutil.ValidateOutput(o.Output); err != nil {
		return err
	}
	if o.Duration < 0 || o.Count < 0 {
		return errdefs.User("--duration and --count must not be negative")
	}
	return nil
}

// Run captures the pod's DNS packets and prints each query with its answer.
func (o *DNSOptions) Run(ctx context.Context) error {
	client, done, err := o.DaemonService(ctx)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := dnswatch.NewTracker(5 * time.Second)
	shown := 0
	show := func(ex dnswatch.Exchange) error {
		shown++
		if o.Output != cmdutil.OutputText {
			if err := cmdutil.PrintItem(o.Out, o.Output, ex); err != nil {
				return err
			}
		} else {
			line := ex.String()
			if ex.Answered && ex.Latency >= SlowAnswer {
				line += " SLOW"
			}
			fmt.Fprintln(o.Out, line)
		}
		if o.Count > 0 && shown >= o.Count {
			cancel()
		}
		return nil
	}
	emit := func(p agent.CapturedPacket) error {
		for _, ex := range tr.Expire(p.Timestamp) {
			if err := show(ex); err != nil {
				return err
			}
		}
		src, dst, msg, ok := decode(p.Data)
		if !ok {
			return nil
		}
		if ex := tr.Observe(p.Timestamp, src, dst, msg); ex != nil {
			return show(*ex)
		}
		return nil
	}
	_, err = client.Capture(ctx, daemon.CaptureRequest{
		Namespace: o.Ns, Pod: o.Pod, Filter: "udp port 53", Duration: o.Duration, AgentImage: o.AgentImage, Snaplen: 65535,
	}, func(line string) { fmt.Fprintln(o.ErrOut, line) }, agent.EachPacket(emit))
	if err != nil && ctx.Err() == nil {
		return err
	}
	for _, ex := range tr.Expire(o.Now().Add(time.Hour)) {
		if o.Count > 0 && shown >= o.Count {
			break
		}
		show(ex)
	}
	return nil
}

// decode returns a frame's DNS message and its endpoints.
func decode(frame []byte) (src, dst netip.AddrPort, msg *layers.DNS, ok bool) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	udp, isUDP := pkt.TransportLayer().(*layers.UDP)
	d, isDNS := pkt.Layer(layers.LayerTypeDNS).(*layers.DNS)
	if !isUDP || !isDNS || pkt.NetworkLayer() == nil {
		return src, dst, nil, false
	}
	flow := pkt.NetworkLayer().NetworkFlow()
	sa, ok1 := netip.AddrFromSlice(flow.Src().Raw())
	da, ok2 := netip.AddrFromSlice(flow.Dst().Raw())
	if !ok1 || !ok2 {
		return src, dst, nil, false
	}
	return netip.AddrPortFrom(sa.Unmap(), uint16(udp.SrcPort)), netip.AddrPortFrom(da.Unmap(), uint16(udp.DstPort)), d, true
}
