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

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/intercept"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/dnswatch"
	"github.com/tetherkube/tether/internal/errdefs"
)

// SlowAnswer is the latency from which an answer is flagged slow.
const SlowAnswer = 100 * time.Millisecond

// NewCmdDNS returns the dns command.
func NewCmdDNS(f *cmdutil.Factory) *cobra.Command {
	var (
		duration   time.Duration
		count      int
		agentImage string
		output     string
	)
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
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cmdutil.ValidateOutput(output); err != nil {
				return err
			}
			if duration < 0 || count < 0 {
				return errdefs.User("--duration and --count must not be negative")
			}
			t, err := f.Target()
			if err != nil {
				return err
			}
			client, done, err := f.Daemon(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer done()
			return run(cmd.Context(), f, client, t.Namespace, args[0], agentImage, duration, count, output)
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until Ctrl-C or --count)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after N answered or expired queries (0: no limit)")
	cmd.Flags().StringVar(&agentImage, "agent-image", intercept.DefaultAgentImage(), "the agent's container image")
	cmdutil.AddOutputFlag(cmd, &output)
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, client daemon.Service, ns, pod, image string, duration time.Duration, count int, output string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := dnswatch.NewTracker(5 * time.Second)
	shown := 0
	show := func(ex dnswatch.Exchange) error {
		shown++
		if output != cmdutil.OutputText {
			if err := cmdutil.PrintStructured(f.IOStreams.Out, output, ex); err != nil {
				return err
			}
		} else {
			line := ex.String()
			if ex.Answered && ex.Latency >= SlowAnswer {
				line += " SLOW"
			}
			fmt.Fprintln(f.IOStreams.Out, line)
		}
		if count > 0 && shown >= count {
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
	_, err := client.Capture(ctx, daemon.CaptureRequest{
		Namespace: ns, Pod: pod, Filter: "udp port 53", Duration: duration, AgentImage: image, Snaplen: 65535,
	}, func(line string) { fmt.Fprintln(f.IOStreams.ErrOut, line) }, agent.EachPacket(emit))
	if err != nil && ctx.Err() == nil {
		return err
	}
	for _, ex := range tr.Expire(time.Now().Add(time.Hour)) {
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
