package netns

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/tetherkube/tether/internal/errdefs"
)

// host is what diagnose reads of the machine: /proc/sys files, whether
// /dev/net/tun opens read-write, and whether a user namespace created
// here gets its capabilities (TryNamespaces). Tests hand in fakes.
type host interface {
	ReadFile(path string) ([]byte, error)
	OpenTUN() error
	TryNamespaces() error
}

const proxyWorks = "; meanwhile `--network proxy` works on this machine as it is"

// diagnose says why the namespace mode cannot work on h, or nil when
// nothing it can see is in the way. Each error is a user error that
// names the setting and the fix.
func diagnose(h host) error {
	read := func(p string) (string, bool) {
		b, err := h.ReadFile(p)
		if err != nil {
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	if v, ok := read("/proc/sys/user/max_user_namespaces"); ok && v == "0" {
		return errdefs.User("user namespaces are disabled on this machine (user.max_user_namespaces=0): enable them with `sudo sysctl -w user.max_user_namespaces=15000` (persist it in /etc/sysctl.d/)" + proxyWorks)
	}
	if v, ok := read("/proc/sys/kernel/unprivileged_userns_clone"); ok && v == "0" {
		return errdefs.User("unprivileged user namespaces are disabled on this machine (kernel.unprivileged_userns_clone=0): enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1` (persist it in /etc/sysctl.d/)" + proxyWorks)
	}
	// The restriction spares programs with an AppArmor profile that allows
	// userns (the fix below): only a namespace that does not work counts.
	if v, ok := read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" && h.TryNamespaces() != nil {
		return errdefs.User("AppArmor restricts unprivileged user namespaces on this machine (kernel.apparmor_restrict_unprivileged_userns=1, the Ubuntu 24.04 default): " +
			"allow them for tether with an AppArmor profile, e.g. /etc/apparmor.d/tether containing `abi <abi/4.0>, include <tunables/global> profile tether /path/to/tether flags=(unconfined) { userns, }` " +
			"and `sudo apparmor_parser -r /etc/apparmor.d/tether`, or for every program with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`" + proxyWorks)
	}
	if _, ok := read("/proc/self/ns/user"); !ok {
		if _, err := h.ReadFile("/proc/self/ns/net"); err != nil && errors.Is(err, fs.ErrNotExist) {
			return errdefs.User("this kernel has no user or network namespaces (CONFIG_USER_NS, CONFIG_NET_NS): use a kernel built with them" + proxyWorks)
		}
	}
	switch err := h.OpenTUN(); {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		return errdefs.User("this machine has no /dev/net/tun: load the module with `sudo modprobe tun` (and create the node with `sudo mkdir -p /dev/net && sudo mknod /dev/net/tun c 10 200 && sudo chmod 0666 /dev/net/tun` if it is still missing)" + proxyWorks)
	case errors.Is(err, fs.ErrPermission):
		return errdefs.User("/dev/net/tun cannot be opened by this user: give it the mode Debian and Ubuntu ship it with, `sudo chmod 0666 /dev/net/tun` (it only lets a program create a TUN device in a network namespace it owns)" + proxyWorks)
	default:
		return errdefs.User("/dev/net/tun cannot be opened: %v; check that the tun module is loaded (`sudo modprobe tun`)%s", err, proxyWorks)
	}
	return nil
}
