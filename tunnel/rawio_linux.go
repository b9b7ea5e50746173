package tunnel

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// RawIO returns c with reads and writes that do not tell the Go runtime
// they are system calls, when c is a *net.TCPConn on Linux; any other c
// is returned as is. The file descriptor stays non-blocking and in the
// runtime's poller: a read that finds nothing waits there, as always, and
// deadlines and Close work as on c.
//
// Why: every system call made the usual way checks whether the runtime's
// monitor thread (sysmon) sleeps, and wakes it when it does. A relay
// whose process goes idle between the messages of a request (the agent
// and the daemon on the direct path, at every keep-alive request) thus
// wakes sysmon at each message, which then polls every 20 µs until the
// process is idle again: on the direct path's latency row that was the
// largest single source of context switches (nanosleep and futex, about
// half of both processes' switches). A read or write of a non-blocking
// socket never blocks, so it needs none of that bookkeeping (the runtime
// itself makes such calls raw). Measured on two relays in a chain on this
// 2-core machine: context switches per request 4.3 -> 2.1 per relay, CPU
// -30%, p50 lower in 5 of 5 interleaved pairs (docs/NOTES.md, Session 7).
//
// The returned connection is no *net.TCPConn, so Join does not splice it:
// use it where the other side is not a TCP connection either (a tunnel
// stream, TLS).
func RawIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawConn{Conn: tc, tcp: tc, rc: rc}
}

// rawConn is a TCP connection read and written with raw system calls.
// It embeds net.Conn, not *net.TCPConn, so that io.Copy never takes
// TCPConn's ReadFrom or WriteTo around its Read and Write.
type rawConn struct {
	net.Conn
	tcp *net.TCPConn
	rc  syscall.RawConn
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait in the poller, then call again
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err // closed, or a deadline passed
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the send buffer is full: wait until it drains
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
	}
	return n, nil
}

// CloseWrite half-closes, as TCPConn's: Join passes half-closes on.
func (c *rawConn) CloseWrite() error { return c.tcp.CloseWrite() }
