// Package capture reads packets from a network interface of the pod's
// network namespace with an AF_PACKET socket, filtered in the kernel by a
// BPF program compiled from a tcpdump-style filter, and writes them as pcap.
// It needs CAP_NET_RAW, which is why only `tether capture` asks for it.
package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tetherkube/tether/internal/pktfilter"
)

// ErrNoPermission means the process lacks CAP_NET_RAW.
var ErrNoPermission = errors.New("capture: opening a packet socket needs CAP_NET_RAW")

// Config says what to capture.
type Config struct {
	// Interface is the device to capture on, e.g. eth0.
	Interface string
	// Filter is a tcpdump-style filter; empty captures everything.
	Filter string
	// Snaplen is how many bytes of each packet to keep.
	Snaplen int
}

// ReceiveBuffer is the socket receive buffer asked for.
const ReceiveBuffer = 8 << 20

// DefaultSnaplen keeps whole packets on any usual MTU.
const DefaultSnaplen = 262144

// Validate checks the Config without I/O (the filter is parsed).
func (c Config) Validate() error {
	if c.Interface == "" {
		return errors.New("capture: no interface")
	}
	if c.Snaplen <= 0 || c.Snaplen > DefaultSnaplen {
		return fmt.Errorf("capture: snaplen %d must be 1 to %d", c.Snaplen, DefaultSnaplen)
	}
	_, err := pktfilter.Parse(c.Filter)
	return err
}

// Capture is an open packet socket.
type Capture struct {
	fd      int
	snaplen int
	// Match is applied in user space when the filter was too complex for a
	// kernel program; nil when the kernel filters.
	match pktfilter.Expr
	buf   []byte
}

// Open opens a packet socket on the interface with the filter attached.
func Open(cfg Config) (*Capture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("capture: interface %q: %w", cfg.Interface, err)
	}
	expr, _ := pktfilter.Parse(cfg.Filter)
	prog, err := pktfilter.Compile(expr, uint32(cfg.Snaplen))
	userSpace := false
	if errors.Is(err, pktfilter.ErrTooComplex) {
		prog, userSpace = []bpf.Instruction{bpf.RetConstant{Val: uint32(cfg.Snaplen)}}, true
	} else if err != nil {
		return nil, err
	}

	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: %w", ErrNoPermission, err)
		}
		return nil, fmt.Errorf("capture: packet socket: %w", err)
	}
	c := &Capture{fd: fd, snaplen: cfg.Snaplen, buf: make([]byte, cfg.Snaplen)}
	// A larger receive buffer absorbs bursts while the reader is busy; the
	// kernel caps it at net.core.rmem_max (SO_RCVBUFFORCE, which is not
	// capped, needs CAP_NET_ADMIN, which the agent does not have).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ReceiveBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ReceiveBuffer)
	}
	if userSpace {
		c.match = expr
	}
	// Drop everything until bound and filtered, then drain what slipped in,
	// so no unfiltered packet reaches the reader.
	if err := c.attach([]bpf.Instruction{bpf.RetConstant{Val: 0}}); err != nil {
		c.Close()
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		c.Close()
		return nil, fmt.Errorf("capture: bind to %s: %w", cfg.Interface, err)
	}
	for {
		if _, _, err := unix.Recvfrom(fd, c.buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	if err := c.attach(prog); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Capture) attach(prog []bpf.Instruction) error {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return fmt.Errorf("capture: assemble filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("capture: attach filter: %w", err)
	}
	return nil
}

// Next returns the next packet (a copy) and its capture info, waiting until
// one arrives or ctx ends.
func (c *Capture) Next(ctx context.Context) ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := c.NextView(ctx)
	if err != nil {
		return nil, ci, err
	}
	return append([]byte(nil), data...), ci, nil
}

// NextView is Next without the copy: the packet's bytes are valid until
// the next call.
func (c *Capture) NextView(ctx context.Context) ([]byte, gopacket.CaptureInfo, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
		// Read first and wait only when nothing is queued: under load one
		// system call per packet. MSG_TRUNC: the return value is the
		// packet's full length.
		length, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("capture: poll: %w", err)
			}
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, gopacket.CaptureInfo{}, fmt.Errorf("capture: read: %w", err)
		}
		captured := min(length, len(c.buf))
		data := c.buf[:captured]
		if c.match != nil && !c.match.Match(pktfilter.FromFrame(data)) {
			continue
		}
		return data, gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: captured, Length: length}, nil
	}
}

// Stats returns the kernel's counts since the last call: packets that
// passed the filter, and those dropped for lack of buffer space.
func (c *Capture) Stats() (received, dropped uint32, err error) {
	var st unix.TpacketStats
	size := uint32(unsafe.Sizeof(st))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(c.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0, 0, fmt.Errorf("capture: statistics: %w", errno)
	}
	return st.Packets, st.Drops, nil
}

// Close closes the socket.
func (c *Capture) Close() error { return unix.Close(c.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
