package netns

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The control channel between Run and the init is a SOCK_SEQPACKET
// socketpair: one JSON message per packet, with at most one fd attached
// (SCM_RIGHTS).
//
//	Run -> init: config (first), start, socket {family, type, proto}, signal {signal}
//	init -> Run: ready (+ the TUN fd), failed {err}, started {pid},
//	             socket (+ the socket's fd, or err), exit {status}
type ctlMsg struct {
	Op     string      `json:"op"`
	Config *initConfig `json:"config,omitempty"`
	Family int         `json:"family,omitempty"`
	Type   int         `json:"type,omitempty"`
	Proto  int         `json:"proto,omitempty"`
	Signal int         `json:"signal,omitempty"`
	Pid    int         `json:"pid,omitempty"`
	Status int         `json:"status,omitempty"`
	Err    string      `json:"err,omitempty"`
}

// initConfig is what the init needs to set the namespaces up and start CMD.
type initConfig struct {
	// Path is CMD's executable, found in its PATH by Run; Argv[0] is
	// the name it was given.
	Path string   `json:"path"`
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir,omitempty"`
	// ResolvConf is a file to bind-mount over /etc/resolv.conf.
	ResolvConf string `json:"resolvConf,omitempty"`
	// NSSwitch, if set, is a file to bind-mount over /etc/nsswitch.conf.
	NSSwitch string `json:"nsswitch,omitempty"`
	// Files: path in CMD's view -> local path, bind-mounted read-only.
	Files map[string]string `json:"files,omitempty"`
	// Probe: only check that the namespaces work (bring lo up), answer
	// "ready" without a TUN, and end.
	Probe bool `json:"probe,omitempty"`
	// Staging is a private, empty directory the init may mount on.
	Staging string `json:"staging"`
	MTU     int    `json:"mtu"`
}

const maxCtlMsg = 4 << 20

type ctl struct{ c *net.UnixConn }

func (c ctl) send(m ctlMsg, f *os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if f != nil {
		oob = unix.UnixRights(int(f.Fd()))
	}
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	return err
}

// recv reads one message and the fd attached to it, if any.
func (c ctl) recv(buf []byte) (ctlMsg, *os.File, error) {
	var m ctlMsg
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, err
	}
	if n == 0 {
		return m, nil, fmt.Errorf("control channel closed")
	}
	var f *os.File
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return m, nil, err
		}
		for _, scm := range scms {
			fds, err := unix.ParseUnixRights(&scm)
			if err != nil {
				continue
			}
			for i, fd := range fds {
				if i == 0 && f == nil {
					f = os.NewFile(uintptr(fd), "passed")
				} else {
					unix.Close(fd)
				}
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		if f != nil {
			f.Close()
		}
		return m, nil, fmt.Errorf("control message: %w", err)
	}
	return m, f, nil
}

// socketpair returns both ends of a SOCK_SEQPACKET socketpair.
func socketpair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, maxCtlMsg)
	}
	return os.NewFile(uintptr(fds[0]), "ctl-run"), os.NewFile(uintptr(fds[1]), "ctl-init"), nil
}

func fileCtl(f *os.File) (ctl, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return ctl{}, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return ctl{}, fmt.Errorf("control channel is a %T", c)
	}
	return ctl{uc}, nil
}
