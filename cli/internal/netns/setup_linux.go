package netns

import (
	"fmt"
	"net"
	"os"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The addresses of CMD's side of the TUN device. They are private to
// CMD's network namespace; packets from them to anywhere reach Run's
// userspace stack.
var (
	tunName  = "tether0"
	tunAddr4 = &net.IPNet{IP: net.IPv4(198, 18, 0, 1), Mask: net.CIDRMask(30, 32)}
	tunAddr6 = &net.IPNet{IP: net.ParseIP("fd7e:7e7e:7e7e::1"), Mask: net.CIDRMask(64, 128)}
)

// setupNamespaces runs in the init: it sets up the network (lo, the TUN
// device, default routes) and the mounts, and returns the TUN's fd.
func setupNamespaces(cfg *initConfig) (*os.File, error) {
	tun, err := setupNetwork(cfg.MTU)
	if err != nil {
		return nil, err
	}
	if err := setupMounts(cfg); err != nil {
		tun.Close()
		return nil, err
	}
	return tun, nil
}

func setupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

func setupNetwork(mtu int) (*os.File, error) {
	if err := setupLoopback(); err != nil {
		return nil, err
	}
	tun, err := openTUN(tunName)
	if err != nil {
		return nil, err
	}
	fail := func(what string, err error) (*os.File, error) {
		tun.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	link, err := netlink.LinkByName(tunName)
	if err != nil {
		return fail("find "+tunName, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fail("set the TUN's MTU", err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: tunAddr4}); err != nil {
		return fail("add the TUN's IPv4 address", err)
	}
	// IPv6 is best effort: a kernel booted with ipv6.disable=1 has none,
	// and CMD then has IPv4 only, as on the machine.
	v6 := netlink.AddrAdd(link, &netlink.Addr{IPNet: tunAddr6, Flags: unix.IFA_F_NODAD}) == nil
	if err := netlink.LinkSetUp(link); err != nil {
		return fail("bring the TUN up", err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fail("add the default route through the TUN", err)
	}
	if v6 {
		_ = netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Scope: netlink.SCOPE_LINK})
	}
	return tun, nil
}

// openTUN creates a TUN device (IP packets, no packet information header).
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open /dev/net/tun: %w", errNoTUN, err)
	}
	var ifr [unix.IFNAMSIZ + 64]byte
	copy(ifr[:unix.IFNAMSIZ-1], name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETIFF: %w", errNoTUN, errno)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}
