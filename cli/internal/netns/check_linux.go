package netns

import (
	"os"

	"golang.org/x/sys/unix"
)

// Check says why the namespace mode cannot work on this machine (user
// namespaces disabled or restricted by AppArmor, no usable /dev/net/tun),
// each with its fix and the reminder that `--network proxy` works now;
// nil when nothing is in the way.
func Check() error { return diagnose(realHost{}) }

type realHost struct{}

func (realHost) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// OpenTUN opens /dev/net/tun read-write and closes it: without TUNSETIFF
// this creates nothing.
func (realHost) OpenTUN() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev/net/tun", Err: err}
	}
	return unix.Close(fd)
}

// TryNamespaces starts the init in new namespaces and has it bring lo up
// (which needs CAP_NET_ADMIN there, what AppArmor's restriction takes
// away), then end.
func (realHost) TryNamespaces() error {
	i, _, err := startInit(Config{}, &initConfig{Probe: true})
	if err != nil {
		return err
	}
	i.close()
	return nil
}
