package tap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherkube/tether/agent/internal/capture"
	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/recording"
)

// ErrNoPermission means the agent lacks CAP_NET_RAW.
var ErrNoPermission = capture.ErrNoPermission

// Config says what a Tap records.
type Config struct {
	// Ports maps each app port to the port its exchanges are recorded
	// under (the agent's port in front of it), as a relayed connection's
	// are.
	Ports map[int]int
	// Pod names the pod in the exchanges.
	Pod string
	// Ring stores the exchanges, recorded with Options.
	Ring    *httprec.Ring
	Options httprec.Options
	// Interfaces are the devices read; empty: every one that is up but
	// the loopback, which carries the agent's own connections to the app
	// (those it relays, recorded as they pass).
	Interfaces []string
	Logger     *slog.Logger
}

// Tap reads the pod's packets to and from the app's ports and records the
// exchanges they carry.
type Tap struct {
	cfg    Config
	caps   []*capture.Capture
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex // the assembler and the kernel's counts
	asm *assembler
	// The kernel's counts, summed (Stats).
	packets, dropped uint64
}

// Stats is what a Tap counted: its connections, and the kernel's counts
// of packets that passed the filter and of those it lost for lack of
// buffer space.
type Stats struct {
	FlowStats
	Packets, Dropped uint64
}

// Start opens the packet sockets and starts reading; Close stops.
func Start(cfg Config) (*Tap, error) {
	if len(cfg.Ports) == 0 {
		return nil, errors.New("tap: no port to record")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ifaces := cfg.Interfaces
	if len(ifaces) == 0 {
		var err error
		if ifaces, err = podInterfaces(); err != nil {
			return nil, err
		}
	}
	local, err := addresses(ifaces)
	if err != nil {
		return nil, err
	}
	opts := cfg.Options
	skip := opts.Skip
	opts.Skip = func(ex *recording.Exchange) bool {
		return isProbe(ex) || (skip != nil && skip(ex))
	}
	t := &Tap{cfg: cfg}
	t.asm = newAssembler(
		func(addr netip.AddrPort) (int, bool) {
			as, ok := cfg.Ports[int(addr.Port())]
			return as, ok && local[addr.Addr()]
		},
		func(client, server netip.AddrPort, recordAs int) Sink {
			return cfg.Ring.NewConn(httprec.Meta{Pod: cfg.Pod, Port: recordAs, Source: client.String(), Destination: recording.ToApp}, opts)
		})
	filter := portFilter(cfg.Ports)
	for _, name := range ifaces {
		// Each packet wakes the reader: letting them gather for 1 ms
		// before reading (session 14) made the reader's turns long enough
		// to show in the callers' p99 (1.22-1.23x the same app with no
		// agent, interleaved; a wake-up per packet 1.00-1.03x, for twice
		// the agent's CPU: docs/NOTES.md, session 16).
		c, err := capture.Open(capture.Config{Interface: name, Filter: filter, Snaplen: capture.DefaultSnaplen})
		if err != nil {
			t.closeCaps()
			return nil, fmt.Errorf("tap: %w", err)
		}
		t.caps = append(t.caps, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	for _, c := range t.caps {
		t.wg.Add(1)
		go t.read(ctx, c)
	}
	t.wg.Add(1)
	go t.sweep(ctx)
	cfg.Logger.Info("recording from a copy of the pod's packets", "interfaces", ifaces, "filter", filter)
	return t, nil
}

// portFilter is the capture filter for the app's ports.
func portFilter(ports map[int]int) string {
	var list []int
	for p := range ports {
		list = append(list, p)
	}
	sort.Ints(list)
	parts := make([]string, len(list))
	for i, p := range list {
		parts[i] = "tcp port " + strconv.Itoa(p)
	}
	return strings.Join(parts, " or ")
}

// podInterfaces are the interfaces up, but the loopback.
func podInterfaces() ([]string, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("tap: list interfaces: %w", err)
	}
	var names []string
	for _, i := range all {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("tap: the pod has no network interface up but the loopback")
	}
	return names, nil
}

// addresses are the interfaces' addresses: the app's, on which callers
// reach it.
func addresses(ifaces []string) (map[netip.Addr]bool, error) {
	local := map[netip.Addr]bool{}
	for _, name := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("tap: interface %q: %w", name, err)
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("tap: addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local[p.Addr().Unmap()] = true
			}
		}
	}
	if len(local) == 0 {
		return nil, fmt.Errorf("tap: %s have no address", strings.Join(ifaces, ", "))
	}
	return local, nil
}

// isProbe: the kubelet's probes of the app, which reach it directly and
// are no caller's traffic (an agent in the Service's path never sees
// them).
func isProbe(ex *recording.Exchange) bool {
	return strings.HasPrefix(ex.Request.Header.Get("User-Agent"), "kube-probe/")
}

func (t *Tap) read(ctx context.Context, c *capture.Capture) {
	defer t.wg.Done()
	for {
		// The assembler copies what it keeps past the call.
		frame, _, err := c.NextView(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.cfg.Logger.Warn("recording from packets stopped", "err", err)
			}
			return
		}
		s, ok := decode(frame)
		if !ok {
			continue
		}
		t.mu.Lock()
		t.asm.segment(s, time.Now())
		t.mu.Unlock()
	}
}

// sweep ends connections gone silent and reads the kernel's counts.
func (t *Tap) sweep(ctx context.Context) {
	defer t.wg.Done()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			t.asm.sweep(now)
			t.countLocked()
			t.mu.Unlock()
		}
	}
}

func (t *Tap) countLocked() {
	for _, c := range t.caps {
		if got, dropped, err := c.Stats(); err == nil {
			t.packets += uint64(got)
			t.dropped += uint64(dropped)
		}
	}
}

// Stats returns what the tap counted so far.
func (t *Tap) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.countLocked()
	return Stats{FlowStats: t.asm.stats, Packets: t.packets, Dropped: t.dropped}
}

// Close stops reading; the connections followed end unfinished.
func (t *Tap) Close() {
	t.cancel()
	t.wg.Wait()
	t.closeCaps()
	t.mu.Lock()
	t.asm.close()
	t.mu.Unlock()
}

func (t *Tap) closeCaps() {
	for _, c := range t.caps {
		c.Close()
	}
}

// decode reads an Ethernet frame's IPv4 or IPv6 TCP segment; ok is false
// for anything else (fragments, IPv6 extension headers, other
// protocols), which the filter lets through only by accident.
func decode(frame []byte) (s Segment, ok bool) {
	if len(frame) < 14 {
		return s, false
	}
	var src, dst netip.Addr
	var l4 []byte
	switch ip := frame[14:]; binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
			return s, false
		}
		ihl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:4]))
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || ihl < 20 || total < ihl || total > len(ip) {
			return s, false // a fragment, or a truncated packet
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:total]
	case 0x86dd:
		if len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != 6 {
			return s, false
		}
		total := 40 + int(binary.BigEndian.Uint16(ip[4:6]))
		if total > len(ip) {
			return s, false
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:total]
	default:
		return s, false
	}
	if len(l4) < 20 {
		return s, false
	}
	off := int(l4[12]>>4) * 4
	if off < 20 || off > len(l4) {
		return s, false
	}
	flags := l4[13]
	return Segment{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4])),
		Seq:     binary.BigEndian.Uint32(l4[4:8]),
		FIN:     flags&0x01 != 0,
		SYN:     flags&0x02 != 0,
		RST:     flags&0x04 != 0,
		ACK:     flags&0x10 != 0,
		Payload: l4[off:],
	}, true
}
